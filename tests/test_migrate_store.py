"""scripts/migrate_store.py and `ResultStore.rewrite_record`: old records rewritten in the current schema with
published paths, predictions kept, stale run ids moved, the leaderboard unchanged, a second pass a no-op."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from records import fake_record, fake_spec, metrics

from fairfacebench.leaderboard.render import to_json
from fairfacebench.leaderboard.tables import build
from fairfacebench.record import RECORD_SCHEMA
from fairfacebench.store import PREDICTIONS, RECORD, ResultStore
from fairfacebench.typed import to_plain

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "migrate_store.py"
ARRAYS = {"test_scores": np.array([[0.2, 0.8], [0.9, 0.1]]), "test_y": np.array([1, 0])}


def load_script():
    spec = importlib.util.spec_from_file_location("migrate_store", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def schema_1(record, **changes) -> dict:
    """A record as fairbench wrote it before the typed model: no schema field, the author's absolute paths."""
    plain = {k: v for k, v in to_plain(record).items() if k != "schema"}
    plain["config"] = {"data_root": "/home/alice/data/UTKFace/", "out": "runs", "seeds": 3}
    plain["weights"] = {"path": "/home/alice/.cache/torch/mobilenet_v2.pth", "sha256": "ab"}
    return {**plain, **changes}


def put(root: Path, run_id: str, data: dict) -> None:
    """A run directory written by hand: the record as given and test predictions."""
    (root / run_id).mkdir(parents=True)
    (root / run_id / RECORD).write_text(json.dumps(data, indent=1))
    np.savez_compressed(root / run_id / PREDICTIONS, **ARRAYS)


def test_rewrite_record_replaces_only_the_record(tmp_path):
    store = ResultStore(tmp_path)
    record = fake_record("erm", test=metrics(0.7))
    store.write(record.run_id, record, ARRAYS)
    record.labels_used = "y:train+val"
    store.rewrite_record(record.run_id, record)
    assert store.record(record.run_id).labels_used == "y:train+val"
    np.testing.assert_array_equal(store.predictions(record.run_id)["test_scores"], ARRAYS["test_scores"])
    assert sorted(p.name for p in store.path(record.run_id).iterdir()) == [PREDICTIONS, RECORD]  # no temp file left
    with pytest.raises(FileNotFoundError, match="no record"):
        store.rewrite_record("absent", record)


def test_migration_publishes_paths_keeps_predictions_and_the_board_and_is_idempotent(tmp_path):
    erm, other = (
        fake_record(spec=s, run_id=s.run_id, test=metrics(acc))
        for s, acc in ((fake_spec("erm"), 0.8), (fake_spec("m"), 0.6))
    )
    put(tmp_path, erm.run_id, schema_1(erm))
    put(tmp_path, "stale-id", schema_1(other, run_id="stale-id"))  # an id the current code no longer computes
    predictions = (tmp_path / erm.run_id / PREDICTIONS).read_bytes()
    board = to_json(build(tmp_path))

    changed = load_script().migrate(tmp_path)

    assert changed == [f"{erm.run_id}: rewritten in schema {RECORD_SCHEMA}", f"stale-id -> {other.spec.run_id}"]
    data = json.loads((tmp_path / erm.run_id / RECORD).read_text())
    assert data["schema"] == RECORD_SCHEMA and data["migrated"] == {"to_schema": RECORD_SCHEMA}
    assert data["config"]["data_root"] == "UTKFace" and data["weights"]["path"] == "mobilenet_v2.pth"
    assert data["config"]["out"] == "runs"  # a relative path is not the author's file system: kept
    assert (tmp_path / erm.run_id / PREDICTIONS).read_bytes() == predictions
    moved = ResultStore(tmp_path, create=False).record(other.spec.run_id)
    assert (
        moved.migrated == {"from_run_id": "stale-id", "to_schema": RECORD_SCHEMA}
        and moved.run_id == other.run_id == other.spec.run_id
    )
    assert not (tmp_path / "stale-id").exists() and (tmp_path / other.spec.run_id / PREDICTIONS).is_file()
    assert to_json(build(tmp_path)) == board.replace("stale-id", other.spec.run_id)
    texts = {p: p.read_text() for p in tmp_path.glob(f"*/{RECORD}")}
    assert load_script().migrate(tmp_path) == [] and {p: p.read_text() for p in texts} == texts
