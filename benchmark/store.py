"""The result store: one directory per run id, written atomically (temp dir + rename); a re-run skips finished runs.

The store alone reads and writes run records (`record.RunRecord`): every
record is migrated and checked field by field when read, and a damaged one
(unreadable, not JSON, a wrong or missing field) is named in a warning and
counts as unfinished.  A run is claimed (pid, host, time) before it trains, so
two processes on one store never compute it twice; rules: docs/ARCHITECTURE.md
("Result store").
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from fairfacebench.errors import ConfigError
from fairfacebench.plain import nan_to_none, to_plain
from fairfacebench.record import RunRecord, parse_record, record_plain
from fairfacebench.typed import PlainTypeError

log = logging.getLogger("fairfacebench")

RECORD = "record.json"
PREDICTIONS = "predictions.npz"
CLAIMS = ".claims"
CLAIM_TIMEOUT_S = 24 * 3600  # a claim from another host, whose pid cannot be checked, is stale after this


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


def check_writable(folder: Path, what: str, remedy: str) -> None:
    """Create `folder` and prove a file can be written there (a probe file, removed); else a ConfigError naming
    `what` the folder is, why it cannot be written and the `remedy`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"{what} {folder} cannot be written ({exc.strerror or exc}): {remedy}") from None


def writable_folder(root: Path) -> None:
    """Create `root` and prove a file can be written there, refusing a file or a read-only folder before any run."""
    if root.exists() and not root.is_dir():
        raise ConfigError(
            f"result store {root} is a file, not a folder: pass --out a folder (new, or an earlier store)"
        )
    check_writable(root, "result store", "pass --out a folder you can write to")


def process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, /proc), so a reused pid is not taken for the claimant."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def process_alive(pid: Any, started: str | None) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    return started is None or started == process_start(pid)


def this_process() -> dict[str, Any]:
    pid = os.getpid()
    return {
        "pid": pid,
        "host": socket.gethostname(),
        "pid_start": process_start(pid),
        "time": time.time(),
        "claimed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def claim_is_stale(claim: dict[str, Any], timeout_s: float) -> bool:
    """Whether a claim's process is gone: same host, its pid is not running (or was reused); else older than timeout."""
    if claim.get("host") != socket.gethostname():
        return not isinstance(claim.get("time"), (int, float)) or time.time() - claim["time"] > timeout_s
    return not process_alive(claim.get("pid"), claim.get("pid_start"))


def is_mine(claim: dict[str, Any]) -> bool:
    return claim.get("pid") == os.getpid() and claim.get("host") == socket.gethostname()


def describe_claim(claim: dict[str, Any]) -> str:
    return f"claimed by pid {claim.get('pid')} on {claim.get('host')} since {claim.get('claimed')}"


def stored_records(root: Path, run_ids: list[str]) -> dict[str, RunRecord | None]:
    """Each run's finished record in the store at `root` (None: absent or damaged), creating nothing."""
    if not root.is_dir():
        return dict.fromkeys(run_ids)
    store = ResultStore(root, create=False)
    return {run_id: store.record(run_id) for run_id in run_ids}


def record_json(record: RunRecord) -> str:
    """A record as the store writes it (also the site's copy): published plain data, NaN as null, indented."""
    return json.dumps(nan_to_none(to_plain(record_plain(record))), indent=1, default=_json_default, allow_nan=False)


class ResultStore:
    """The run directories under `root`; `create=False` opens an existing store for reading only."""

    def __init__(self, root: Path | str, create: bool = True, claim_timeout_s: float = CLAIM_TIMEOUT_S):
        self.root = Path(root)
        self.claim_timeout_s = claim_timeout_s
        self._warned: set[Path] = set()
        if create:
            writable_folder(self.root)
        elif not self.root.is_dir():
            raise ConfigError(f"no result store at {self.root}: pass the --out folder of `fairbench run`")

    def path(self, run_id: str) -> Path:
        return self.root / run_id

    def read(self, path: Path) -> RunRecord | None:
        """The record at `path`; None when absent, or when damaged (then a warning names the file, once)."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            return self._damaged(path, f"unreadable: {exc}")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            return self._damaged(path, f"not valid JSON ({exc})" if text.strip() else "the file is empty")
        try:
            return parse_record(data)
        except PlainTypeError as exc:
            return self._damaged(path, str(exc))

    def _damaged(self, path: Path, problem: str) -> None:
        if path not in self._warned:
            self._warned.add(path)
            log.warning(
                "damaged run record %s: %s; it counts as unfinished (`fairbench run` computes the run again) "
                "and the leaderboard skips it",
                path,
                problem,
            )
        return None

    def record(self, run_id: str) -> RunRecord | None:
        """The finished record of a run; None when absent or damaged (named in a warning)."""
        return self.read(self.path(run_id) / RECORD)

    def status(self, run_id: str) -> str | None:
        """'ok', 'failed' or None when the run has no finished (readable) record."""
        record = self.record(run_id)
        return None if record is None else record.status

    def write(self, run_id: str, record: RunRecord, arrays: dict[str, np.ndarray] | None = None) -> Path:
        """Write a run directory atomically (temp dir + rename), replacing any earlier attempt; ends the run's claim."""
        final = self.path(run_id)
        tmp = Path(tempfile.mkdtemp(prefix=f".{run_id}.", dir=self.root))
        try:
            text = record_json(record)
            (tmp / RECORD).write_text(text)
            if arrays:
                np.savez_compressed(tmp / PREDICTIONS, **arrays)
            for f in tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            with self._locked():  # two writers of one run id swap one at a time
                if final.exists():
                    trash = Path(tempfile.mkdtemp(prefix=f".old.{run_id}.", dir=self.root))
                    os.rename(final, trash / "run")
                    shutil.rmtree(trash)
                os.rename(tmp, final)
                self._drop_claim(run_id)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def rewrite_record(self, run_id: str, record: RunRecord) -> Path:
        """Replace only the record of a stored run, atomically (temp file + rename), keeping its predictions: how a
        migration brings a record to the current schema."""
        final = self.path(run_id) / RECORD
        if not final.is_file():
            raise FileNotFoundError(f"no record {final} to rewrite: rewrite_record replaces a stored run's record")
        handle, tmp = tempfile.mkstemp(prefix=f".{RECORD}.", dir=final.parent)
        try:
            with os.fdopen(handle, "w") as fh:
                fh.write(record_json(record))
                fh.flush()
                os.fsync(fh.fileno())
            with self._locked():
                os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return final

    def records(self) -> Iterator[RunRecord]:
        """All finished records; temporary and partial directories are ignored, damaged records skipped (warned)."""
        for d in sorted(self.root.iterdir()):
            if d.name.startswith(".") or not d.is_dir():
                continue
            record = self.read(d / RECORD)
            if record is not None:
                yield record

    def predictions(self, run_id: str) -> dict[str, np.ndarray]:
        with np.load(self.path(run_id) / PREDICTIONS, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    # ------------------------------------------------------------ claims: one process computes a run

    def claim(self, run_id: str) -> str | None:
        """Claim a run for this process before it trains: None when claimed, else who holds it (a live claim)."""
        path = self._claim_path(run_id)
        with self._locked():
            held = self._read_claim(path)
            if self._live_elsewhere(held):
                return describe_claim(held)
            if held is not None and not is_mine(held):
                log.warning("run %s: recovering a stale claim (%s)", run_id, describe_claim(held))
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(this_process()))
            os.replace(tmp, path)
        return None

    def held_elsewhere(self, run_id: str) -> str | None:
        """Who holds a live claim on a run, when another process does (a grid that computes it: a grid claims all
        its runs as it starts), else None; reads only (`--dry-run` beside a running grid)."""
        held = self._read_claim(self._claim_path(run_id))
        return describe_claim(held) if self._live_elsewhere(held) else None

    def _live_elsewhere(self, held: dict[str, Any] | None) -> bool:
        """Whether a claim read from the store is another process's and still live (not stale)."""
        return held is not None and not is_mine(held) and not claim_is_stale(held, self.claim_timeout_s)

    def release(self, run_id: str) -> None:
        """Drop this process's claim on a run it leaves unfinished (another process's claim is left alone)."""
        path = self._claim_path(run_id)
        with self._locked():
            held = self._read_claim(path)
            if held is not None and is_mine(held):
                self._drop_claim(run_id)

    def _claim_path(self, run_id: str) -> Path:
        return self.root / CLAIMS / f"{run_id}.json"

    def _read_claim(self, path: Path) -> dict[str, Any] | None:
        try:
            held = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # a torn claim file: stale (no pid)
        return held if isinstance(held, dict) else {}

    def _drop_claim(self, run_id: str) -> None:
        """Remove a run's claim, and the claims folder once empty (the caller holds the store lock)."""
        self._claim_path(run_id).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (self.root / CLAIMS).rmdir()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The store's lock (flock on its folder): claims and the final rename of a run, one process at a time."""
        fd = os.open(self.root, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
