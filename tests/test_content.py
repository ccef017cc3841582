"""Content digests beside the run id (issue 28): the id follows file names, sizes and labels, so the ids of the
committed stores and of running grids hold; the bytes of the data, a --weights file, a pool (a folder, a dataset's
training images), an encoder's weights given by path and each --eval-on dataset are digested into `RunSpec.content`,
recorded, and a resumed grid computes again a run whose inputs hold other bytes now."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from fake_runs import FakeRunner
from fixtures_layouts import build_csv_folder, build_fairface, build_utkface
from records import fake_record

from fairfacebench import content
from fairfacebench.cli import main
from fairfacebench.content import file_digests
from fairfacebench.grid import content_changes, execute
from fairfacebench.plan import content_of, expand, load_plan
from fairfacebench.plugins import registry
from fairfacebench.preflight import check_plan
from fairfacebench.record import parse_record
from fairfacebench.store import ResultStore

STORES = sorted(p for p in (Path(__file__).resolve().parents[1] / "stores").iterdir() if p.is_dir())
OPTIONS = {"target": "smiling", "sensitive": "skin"}
CLI = ["--datasets", "csv", "--methods", "erm", "--budget", "smoke", "--allow-tiny-groups"]
CLI += ["--dataset-option", "csv.target=smiling", "--dataset-option", "csv.sensitive=skin"]


def test_a_file_rewritten_in_place_with_its_size_and_mtime_kept_is_hashed_again(tmp_path, monkeypatch):
    monkeypatch.setattr(content, "RACY_S", 0.0)
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 100)
    time.sleep(0.05)  # past the file system clock's tick of the write
    assert file_digests([path], tmp_path / "cache") == [hashlib.sha256(b"x" * 100).hexdigest()]
    hashed = []
    monkeypatch.setattr(content, "file_sha256", lambda p: hashed.append(p) or "recomputed")
    assert file_digests([path, tmp_path / "missing"], tmp_path / "cache")[1] is None and hashed == []  # cached
    before = path.stat()
    with open(path, "r+b") as handle:  # same inode, same size
        handle.write(b"y")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert file_digests([path], tmp_path / "cache") == ["recomputed"] and hashed == [path]


def test_a_file_changed_just_now_is_not_cached(tmp_path, monkeypatch):
    path = tmp_path / "a.bin"
    path.write_bytes(b"x")
    file_digests([path], tmp_path / "cache")
    hashed = []
    monkeypatch.setattr(content, "file_sha256", lambda p: hashed.append(p) or "again")
    assert file_digests([path], tmp_path / "cache") == ["again"]


def csv_specs(root: Path, weights: str = "imagenet"):
    flags = {"datasets": ["csv"], "methods": ["erm"], "budget": "smoke", "weights": weights}
    flags |= {"data_roots": {"csv": str(root)}, "dataset_options": {"csv": OPTIONS}}
    return expand(load_plan(None, flags), registry())


def same_size_replacement(folder: Path) -> Path:
    """The largest image's bytes replaced by the smallest's, padded to the same size (PNG ignores trailing bytes);
    its mtime kept."""
    small, large = (lambda fs: (fs[0], fs[-1]))(sorted(folder.glob("*.png"), key=lambda p: p.stat().st_size))
    stamp = large.stat()
    large.write_bytes(small.read_bytes().ljust(stamp.st_size, b"\0"))
    os.utime(large, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    return large


def test_images_replaced_under_the_same_names_and_sizes_keep_the_run_id_and_are_computed_again(
    tmp_path, caplog, capsys
):
    root = build_csv_folder(tmp_path / "mine")
    (before,) = csv_specs(root)
    store = ResultStore(tmp_path / "runs")
    assert execute([before], store, FakeRunner())["ok"] == 1
    assert execute([before], store, FakeRunner())["skipped"] == 1
    same_size_replacement(root / "img")
    (after,) = csv_specs(root)
    assert after.run_id == before.run_id and after.content["data"] != before.content["data"]
    argv = ["run", *CLI, "--data-root", str(root), "--out", str(store.root), "--dry-run"]
    assert main(argv) == 0
    assert "recompute (its data changed" in capsys.readouterr().out
    assert execute([after], store, FakeRunner()) == {"ok": 1, "failed": 0, "skipped": 0}
    assert f"run {after.label}: its data changed since it was computed" in caplog.text
    assert store.record(after.run_id).spec.content == after.content


def test_renamed_classes_keep_the_run_id_and_change_the_data_digest(tmp_path):
    root = build_csv_folder(tmp_path / "mine")
    (before,) = csv_specs(root)
    labels = root / "labels.csv"
    labels.write_text(labels.read_text().replace(",dark,", ",dim,"))  # dark < light: the order and codes hold
    (after,) = csv_specs(root)
    assert after.run_id == before.run_id and after.content["data"] != before.content["data"]


def test_a_replaced_weights_file_keeps_the_run_id_and_its_runs_are_computed_again(tmp_path):
    root = build_csv_folder(tmp_path / "mine")
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"a" * 64)
    (before,) = csv_specs(root, str(weights))
    weights.write_bytes(b"b" * 64)
    (after,) = csv_specs(root, str(weights))
    assert after.run_id == before.run_id
    assert after.content["weights"] == hashlib.sha256(b"b" * 64).hexdigest() != before.content["weights"]
    record = fake_record(spec=before, run_id=before.run_id)
    assert content_changes(record, after) == ["weights"] and content_changes(record, before) == []
    # a record made before content digests: its weights' sha256 (every record keeps it) is compared, nothing else
    old = fake_record(spec=replace(before, content={}), run_id=before.run_id)
    old.weights = {"source": "local-file", "sha256": before.content["weights"]}
    assert content_changes(old, after) == ["weights"] and content_changes(old, before) == []


@pytest.mark.parametrize("store", STORES, ids=[p.name for p in STORES])
def test_the_run_ids_of_the_committed_stores_are_unchanged(store):
    for path in sorted(store.glob("*/record.json")):
        record = parse_record(json.loads(path.read_text()))
        assert record.spec.run_id == record.run_id == path.parent.name
        # digests sit beside the run id, never in it (records made before them have none: never compared)
        parts = record.spec.content
        assert all(part in ("data", "weights", "pool", "vlm") or part.startswith("eval-on ") for part in parts)


def test_the_data_fingerprints_of_the_built_in_datasets_are_unchanged(utkface_root):
    """The committed stores' runs still get their ids from the data as it is (synthfaces and UTKFace)."""
    reg = registry()
    recorded: dict[tuple, set[str]] = {}
    for path in sorted(Path(__file__).resolve().parents[1].glob("stores/*/*/record.json")):
        spec = json.loads(path.read_text())["spec"]
        key = (spec["dataset"], json.dumps(spec["dataset_options"], sort_keys=True), spec["task"])
        recorded.setdefault(key, set()).add(spec["data_fingerprint"])
    assert {d for d, _, _ in recorded} >= {"synthfaces", "utkface-cb"}
    for (dataset, options, task), fingerprints in recorded.items():
        plugin = reg.dataset(dataset)
        per_task = {"task": task} if plugin.splits_per_task else {}
        fingerprint = plugin.fingerprint(utkface_root if plugin.needs_root else None, **per_task, **json.loads(options))
        assert {fingerprint} == fingerprints, (dataset, options, task)


def test_a_folder_pool_replaced_under_the_same_names_and_sizes_changes_its_digest(tmp_path):
    pool = tmp_path / "pool"
    build_csv_folder(pool, n=6)
    before = content_of("", "imagenet", {"kind": "folder", "root": str(pool)})
    same_size_replacement(pool / "img")
    after = content_of("", "imagenet", {"kind": "folder", "root": str(pool)})
    assert set(before) == {"pool"} and after["pool"] != before["pool"]


def rewritten(path: Path) -> Path:
    """`path` with its last byte changed in place (a JPEG's trailing bytes are not decoded), its size and mtime kept."""
    stamp = path.stat()
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (stamp.st_size, stamp.st_mtime_ns)
    return path


def test_an_eval_on_dataset_replaced_under_the_same_names_and_sizes_changes_its_digest(tmp_path):
    build_utkface(tmp_path / "UTKFace")
    rows = build_fairface(tmp_path / "fairface")
    flags = {"datasets": ["utkface-cb"], "tasks": {"utkface-cb": ["gender/race"]}, "methods": ["erm"]}
    flags |= {"budget": "smoke", "eval_on": ["fairface"], "out": str(tmp_path / "runs")}
    flags |= {"data_roots": {"utkface-cb": str(tmp_path / "UTKFace"), "fairface": str(tmp_path / "fairface")}}

    def checked():
        (spec,) = check_plan(load_plan(None, flags), registry(), allow_tiny_groups=True).specs
        return spec

    before = checked()
    rewritten(tmp_path / "fairface" / rows["val"][0][0])  # a test image of the transfer dataset
    after = checked()
    assert after.run_id == before.run_id and after.content["data"] == before.content["data"]
    assert after.content["eval-on fairface"] != before.content["eval-on fairface"]
    assert content_changes(fake_record(spec=before, run_id=before.run_id), after) == ["eval-on fairface"]
    # a run asked without --eval-on compares only what it reads
    (own,) = check_plan(load_plan(None, {**flags, "eval_on": None}), registry(), allow_tiny_groups=True).specs
    assert set(own.content) == {"data"} and content_changes(fake_record(spec=after, run_id=own.run_id), own) == []


def test_a_dataset_train_pool_replaced_under_the_same_names_and_sizes_changes_its_digest(tmp_path):
    names = build_utkface(tmp_path / "UTKFace")
    flags = {"datasets": ["synthfaces"], "methods": ["erm", "simclr"], "budget": "smoke"}
    flags |= {"pool": "dataset-train:utkface", "data_roots": {"utkface": str(tmp_path / "UTKFace")}}

    def specs():
        return {s.method: s for s in expand(load_plan(None, flags), registry())}

    before = specs()
    rewritten(tmp_path / "UTKFace" / names[0])
    after = specs()
    assert "pool" not in after["erm"].content  # erm reads no pool
    assert after["simclr"].run_id == before["simclr"].run_id
    assert after["simclr"].content["pool"] != before["simclr"].content["pool"]
    record = fake_record(spec=before["simclr"], run_id=before["simclr"].run_id)
    assert content_changes(record, after["simclr"]) == ["pool"]


def test_an_encoder_checkpoint_replaced_under_the_same_name_and_size_changes_its_digest(tmp_path):
    checkpoint = tmp_path / "clip.pt"
    checkpoint.write_bytes(b"a" * 64)
    flags = {"datasets": ["synthfaces"], "methods": ["erm", "clip-cluster"], "budget": "smoke"}
    flags |= {"vlm": f"open_clip:ViT-B-32:{checkpoint}"}

    def specs():
        return {s.method: s for s in expand(load_plan(None, flags), registry())}

    before = specs()
    rewritten(checkpoint)
    after = specs()
    assert "vlm" not in after["erm"].content  # erm loads no encoder
    assert after["clip-cluster"].run_id == before["clip-cluster"].run_id
    # the sha256 a run's record keeps in `vlm` (the encoder's info)
    assert after["clip-cluster"].content["vlm"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert before["clip-cluster"].content["vlm"] == hashlib.sha256(b"a" * 64).hexdigest()
    record = fake_record(spec=before["clip-cluster"], run_id=before["clip-cluster"].run_id)
    assert content_changes(record, after["clip-cluster"]) == ["vlm"]
    # a record made before this digest: its encoder's sha256 is compared, as a --weights file's is
    old = fake_record(spec=replace(before["clip-cluster"], content={}), run_id=before["clip-cluster"].run_id)
    old.vlm = {"id": "open_clip-ViT-B-32", "sha256": before["clip-cluster"].content["vlm"]}
    assert content_changes(old, after["clip-cluster"]) == ["vlm"] and content_changes(old, before["clip-cluster"]) == []
