"""UTKFace: strict name parsing, skipped irregular names, stratified split, tasks; real-folder counts."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from fixtures_layouts import UTK_IRREGULAR, UTK_MISSING_RACE, build_utkface

from fairfacebench.cli import main
from fairfacebench.data import DataError, make_task_data, same_data
from fairfacebench.datasets import utkface
from fairfacebench.datasets.utkface import UTKFace, age_binary, age_group, parse_folder, parse_name


@pytest.fixture()
def root(tmp_path):
    build_utkface(tmp_path / "UTKFace")
    return tmp_path / "UTKFace"


def test_parse_name_is_strict_and_never_guesses():
    assert parse_name("26_1_3_20170119180908451.jpg.chip.jpg") == (26, 1, 3)
    assert parse_name("14_0_0_2017011022340900.jpg.chip.jpg") == (14, 0, 0)
    assert parse_name("39_1_20170116174525125.jpg.chip.jpg") == "missing race field"
    assert parse_name("24_0_1_20170116220224657 .jpg.chip.jpg") == "irregular name"
    assert parse_name("55_0_0_20170116232725357jpg.chip.jpg") == "irregular name"
    assert parse_name("30_2_0_20170116232725357.jpg.chip.jpg") == "irregular name"
    assert parse_name("30_0_5_20170116232725357.jpg.chip.jpg") == "irregular name"
    assert parse_name("README.txt") == "not a .jpg file"


def test_age_bins():
    ages = np.array([0, 19, 20, 39, 40, 59, 60, 116])
    assert age_group(ages).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert age_binary(ages).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_irregular_names_are_skipped_with_one_named_warning(root, caplog, capsys, tmp_path):
    """Parsing logs the skipped names at INFO (it runs in preflight, the fingerprint and every run's process); the
    check report carries the one warning, which `run` prints once."""
    with caplog.at_level(logging.INFO, logger=utkface.__name__):
        parsed = parse_folder(root)
    assert len(parsed.files) == 60
    assert {s["file"]: s["reason"] for s in parsed.skipped} == {
        **{n: "missing race field" for n in UTK_MISSING_RACE},
        **{n: "irregular name" for n in UTK_IRREGULAR},
    }
    assert all(r.levelno == logging.INFO for r in caplog.records)
    (warning,) = UTKFace().check(root)["warnings"]
    assert "skipped 5 of 65" in warning and all(n in warning for n in (*UTK_MISSING_RACE, *UTK_IRREGULAR))
    argv = ["run", "--methods", "erm", "--datasets", "utkface", "--data-root", str(root), "--budget", "smoke"]
    assert main([*argv, "--allow-tiny-groups", "--out", str(tmp_path / "runs"), "--dry-run"]) == 0
    assert capsys.readouterr().err.count("skipped 5 of 65") == 1


def test_load_gives_stratified_splits_and_labels_from_names(root, tmp_path):
    ds = UTKFace().load(root, 16, tmp_path / "cache", workers=1, progress=False)
    assert {k: len(s) for k, s in ds.splits.items()} == {"train": 20, "val": 20, "test": 20}
    assert ds.info["split"]["seed"] == 0 and ds.info["split"]["sizes"] == {"train": 20, "val": 20, "test": 20}
    assert len(ds.info["skipped_names"]) == 5 and "skipped" in ds.info["irregular_names"]
    for split in ds.splits.values():
        assert split.images.shape[1:] == (16, 16, 3) and isinstance(split.images, np.memmap)
        for i, file in enumerate(split.ids):
            age, gender, race = parse_name(file)
            assert (split.labels["gender"][i], split.labels["race"][i]) == (gender, race)
            assert split.labels["age_binary"][i] == (age >= 40)
        assert sorted(np.unique(split.labels["race"])) == [0, 1, 2, 3, 4]


def test_split_seed_is_fixed_and_recorded(root):
    first, again = UTKFace().index(root), UTKFace().index(root)
    other = UTKFace().index(root, split_seed=1)
    assert first.tables["val"].files == again.tables["val"].files
    assert first.tables["val"].files != other.tables["val"].files
    assert other.info["split"]["seed"] == 1


def test_every_task_builds_task_data(root, tmp_path):
    plugin = UTKFace()
    ds = plugin.load(root, 8, tmp_path / "cache", workers=1, progress=False)
    for task in plugin.tasks:
        data = make_task_data(ds, task)
        assert len(data.train) == 20 and data.n_classes == plugin.attributes[task.target].n
    assert plugin.task(None).name == "gender/race"


def test_missing_root_tells_the_user_to_pass_data_root(tmp_path):
    with pytest.raises(DataError, match="--data-root"):
        UTKFace().load(None, 16, tmp_path)


def test_parent_folder_points_at_the_subfolder(root, tmp_path):
    with pytest.raises(DataError, match=r"subfolder\(s\) \['UTKFace'\]"):
        UTKFace().index(tmp_path)


def test_check_and_prepare_return_plain_data(root, tmp_path):
    report = UTKFace().check(root)
    assert report["ok"] and report["splits"] == {"train": 20, "val": 20, "test": 20}
    assert report["groups"]["val"]["race"] == {"White": 4, "Black": 4, "Asian": 4, "Indian": 4, "Others": 4}
    prepared = UTKFace().prepare(root, 8, tmp_path / "cache", workers=1, progress=False)
    assert prepared["images"] == 60 and prepared["skipped"] == 0


def test_real_folder_counts_with_the_strict_pattern(utkface_root):
    parsed = parse_folder(utkface_root)
    assert len(parsed.files) == 23_702
    assert dict(zip(utkface.ATTRIBUTES["race"].classes, np.bincount(parsed.race).tolist())) == {
        "White": 10_077,
        "Black": 4_524,
        "Asian": 3_434,
        "Indian": 3_975,
        "Others": 1_692,
    }
    assert np.bincount(parsed.gender).tolist() == [12_388, 11_314]
    assert sorted(s["file"] for s in parsed.skipped) == sorted((*UTK_MISSING_RACE, *UTK_IRREGULAR))


def test_real_folder_split_covers_every_group(utkface_root):
    index = UTKFace().index(utkface_root)
    assert sum(index.info["split"]["sizes"].values()) == 23_702
    for table in index.tables.values():
        combos = set(
            zip(table.labels["gender"].tolist(), table.labels["race"].tolist(), table.labels["age_group"].tolist())
        )
        assert len(combos) == 40


def test_the_checks_before_a_grid_index_a_folder_once_per_task_and_only_inside_same_data(root, monkeypatch):
    calls = []
    original = utkface.UTKFaceControlledBias.index

    def counting(self, folder, strict=False, **options):
        calls.append(options.get("task"))
        return original(self, folder, strict=strict, **options)

    monkeypatch.setattr(utkface.UTKFaceControlledBias, "index", counting)
    ds = utkface.UTKFaceControlledBias()
    tasks = [t.name for t in ds.tasks]

    run = ds.run_options({})  # as a plan reads them (cells and check add them themselves)

    def read_four_ways():
        out = [ds.cells(root, tasks), ds.check(root)]
        return out + [(ds.fingerprint(root, task=t, **run), ds.content(root, task=t, **run)) for t in tasks]

    alone = read_four_ways()
    assert len(calls) == 4 * len(tasks)  # cells, check, fingerprint, content: each indexes every task's splits
    calls.clear()
    with same_data():
        assert read_four_ways() == alone
    assert sorted(calls) == sorted(tasks)  # once per task
    ds.fingerprint(root, task=tasks[0], **run)
    assert len(calls) == len(tasks) + 1  # outside it, the folder is read again
