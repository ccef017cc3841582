"""The result store: one directory per run id, written atomically (temp dir + rename); a re-run skips finished runs."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from fairfacebench.plain import nan_to_none, to_plain

RECORD = "record.json"
PREDICTIONS = "predictions.npz"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return sorted(obj) if isinstance(obj, set) else list(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a run record")


class ResultStore:
    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, run_id: str) -> Path:
        return self.root / run_id

    def status(self, run_id: str) -> str | None:
        """'ok', 'failed' or None when the run has no finished record."""
        record = self.path(run_id) / RECORD
        if not record.exists():
            return None
        return json.loads(record.read_text()).get("status")

    def write(self, run_id: str, record: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> Path:
        """Write a run directory atomically (temp dir + rename), replacing any earlier attempt."""
        final = self.path(run_id)
        tmp = Path(tempfile.mkdtemp(prefix=f".{run_id}.", dir=self.root))
        try:
            text = json.dumps(nan_to_none(to_plain(record)), indent=1, default=_json_default, allow_nan=False)
            (tmp / RECORD).write_text(text)
            if arrays:
                np.savez_compressed(tmp / PREDICTIONS, **arrays)
            for f in tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            if final.exists():
                trash = Path(tempfile.mkdtemp(prefix=f".old.{run_id}.", dir=self.root))
                os.rename(final, trash / "run")
                shutil.rmtree(trash)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def records(self) -> Iterator[dict[str, Any]]:
        """All finished records (temporary and partial directories are ignored)."""
        for d in sorted(self.root.iterdir()):
            if d.name.startswith(".") or not (d / RECORD).exists():
                continue
            yield json.loads((d / RECORD).read_text())

    def predictions(self, run_id: str) -> dict[str, np.ndarray]:
        with np.load(self.path(run_id) / PREDICTIONS, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
