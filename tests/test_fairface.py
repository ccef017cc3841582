"""FairFace: official layout, val = test, carved validation, race4 handling, tasks."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_layouts import build_fairface

from fairfacebench.data import make_task_data
from fairfacebench.datasets.fairface import FairFace
from fairfacebench.datasets.indexed import NOT_APPLICABLE, restrict_to_task


@pytest.fixture()
def root(tmp_path):
    build_fairface(tmp_path / "fairface")
    return tmp_path / "fairface"


@pytest.fixture()
def loaded(root, tmp_path):
    return FairFace().load(root, 16, tmp_path / "cache", workers=1, progress=False)


def test_official_val_is_test_and_val_is_carved_from_train(loaded):
    assert {k: len(s) for k, s in loaded.splits.items()} == {"train": 14, "val": 14, "test": 14}
    assert all(f.startswith("val/") for f in loaded.splits["test"].ids)
    assert all(f.startswith("train/") for k in ("train", "val") for f in loaded.splits[k].ids)
    assert not set(loaded.splits["train"].ids) & set(loaded.splits["val"].ids)
    assert loaded.info["split"]["seed"] == 0 and loaded.info["split"]["stratified_on"] == ["gender", "race", "age"]
    for name in ("train", "val"):
        assert sorted(np.unique(loaded.splits[name].labels["race"])) == list(range(7))


def test_any_image_size_is_resized(loaded):
    assert all(s.images.shape[1:] == (16, 16, 3) for s in loaded.splits.values())


def test_labels_follow_the_csv(root, loaded):
    rows = {
        line.split(",")[0]: line.split(",") for line in (root / "fairface_label_val.csv").read_text().splitlines()[1:]
    }
    test = loaded.splits["test"]
    attrs = loaded.attributes
    for i, file in enumerate(test.ids):
        _, age, gender, race, _ = rows[file]
        assert attrs["age"].classes[test.labels["age"][i]] == age
        assert attrs["gender"].classes[test.labels["gender"][i]] == gender
        assert attrs["race"].classes[test.labels["race"][i]] == race


def test_race4_groups_asian_and_marks_the_other_races_not_applicable(loaded):
    labels = loaded.splits["test"].labels
    race, race4 = np.asarray(loaded.attributes["race"].classes)[labels["race"]], labels["race4"]
    assert set(race[race4 == 2]) == {"East Asian", "Southeast Asian"}
    assert set(race[race4 == NOT_APPLICABLE]) == {"Latino_Hispanic", "Middle Eastern"}


def test_race4_task_drops_rows_outside_race4_and_records_it(root, tmp_path, loaded):
    ds = FairFace().load(root, 16, tmp_path / "cache", workers=1, progress=False, task="gender/race4")
    assert ds.info["task_rows_dropped"]["per_split"] == {"train": 4, "val": 4, "test": 4}
    assert all((s.labels["race4"] >= 0).all() for s in ds.splits.values())
    assert all(isinstance(s.images, np.memmap) for s in ds.splits.values()), (
        "rows outside race4 come last: a slice, no copy"
    )
    data = make_task_data(ds, FairFace().task("gender/race4"))
    assert data.group_names == ("White", "Black", "Asian", "Indian") and len(data.train) == 10
    assert restrict_to_task(loaded, FairFace().task("gender/race")) is loaded


def test_every_task_builds_task_data(loaded):
    plugin = FairFace()
    for task in plugin.tasks:
        data = make_task_data(restrict_to_task(loaded, task), task)
        assert data.n_classes == plugin.attributes[task.target].n


def test_windows_line_endings_are_accepted(tmp_path):
    build_fairface(tmp_path / "crlf", line_ending="\r\n")
    index = FairFace().index(tmp_path / "crlf")
    assert sum(len(t) for t in index.tables.values()) == 42 and not index.info["notes"]


def test_check_reports_counts_per_split_and_group(root):
    report = FairFace().check(root)
    assert report["ok"], report["problems"]
    assert report["splits"] == {"train": 14, "val": 14, "test": 14}
    assert report["groups"]["test"]["race4"]["Asian"] == 4
    assert report["groups"]["test"]["race4"]["(not applicable)"] == 4
