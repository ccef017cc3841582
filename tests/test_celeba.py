"""CelebA: text and CSV variants, 1/-1 coding, official partition, any-attribute tasks."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_layouts import build_celeba

from fairfacebench.data import make_task_data
from fairfacebench.datasets.celeba import ATTRIBUTE_NAMES, CelebA


@pytest.fixture(params=["txt", "csv"])
def variant(request, tmp_path):
    files, values, partition = build_celeba(tmp_path / "celeba", request.param)
    return tmp_path / "celeba", files, values, partition


def test_forty_official_attributes():
    assert len(ATTRIBUTE_NAMES) == len(set(ATTRIBUTE_NAMES)) == 40


def test_both_variants_load_the_official_partition_with_0_1_codes(variant, tmp_path):
    root, files, values, partition = variant
    ds = CelebA().load(root, 16, tmp_path / "cache", workers=1, progress=False)
    for code, name in enumerate(("train", "val", "test")):
        split = ds.splits[name]
        expected = [f for f, p in zip(files, partition) if p == code]
        assert split.ids.tolist() == expected
        rows = [files.index(f) for f in expected]
        for a, attr in enumerate(ATTRIBUTE_NAMES):
            assert split.labels[attr].tolist() == (values[rows, a] == 1).astype(int).tolist()
        assert split.images.shape == (len(expected), 16, 16, 3)
    assert ds.info["split"]["method"] == "official partition"


def test_variants_agree(tmp_path):
    build_celeba(tmp_path / "t", "txt")
    build_celeba(tmp_path / "c", "csv")
    txt, csv = CelebA().index(tmp_path / "t"), CelebA().index(tmp_path / "c")
    for name in ("train", "val", "test"):
        assert txt.tables[name].files == csv.tables[name].files
        for attr in ATTRIBUTE_NAMES:
            np.testing.assert_array_equal(txt.tables[name].labels[attr], csv.tables[name].labels[attr])


def test_usual_tasks_and_any_attribute_pair(tmp_path):
    build_celeba(tmp_path / "celeba")
    plugin = CelebA()
    ds = plugin.load(tmp_path / "celeba", 8, tmp_path / "cache", workers=1, progress=False)
    assert plugin.task(None).name == "Smiling/Male" and len(plugin.tasks) == 12
    for name in ("Bags_Under_Eyes/Young", "Wearing_Hat/Male", "5_o_Clock_Shadow/Young", "Smiling/Male+Young"):
        task = plugin.task(name)
        data = make_task_data(ds, task)
        assert data.n_classes == 2 and data.n_groups == 2 ** len(task.sensitive)
    assert all(plugin.task(f"{a}/Male").target == a for a in ATTRIBUTE_NAMES if a != "Male")


@pytest.mark.parametrize("name", ["Smiling/Gender", "Smile/Male", "Smiling", "Male/Male", "/Male"])
def test_invalid_task_names_list_the_valid_attributes(name):
    with pytest.raises(KeyError, match="Wavy_Hair") as err:
        CelebA().task(name)
    assert "usual tasks" in str(err.value)


def test_windows_line_endings_in_the_text_files(tmp_path):
    files, _, _ = build_celeba(tmp_path / "celeba", "txt", line_ending="\r\n")
    index = CelebA().index(tmp_path / "celeba")
    assert sum(len(t) for t in index.tables.values()) == len(files) and not index.info["notes"]


def test_check_reports_per_group_counts(tmp_path):
    build_celeba(tmp_path / "celeba", "csv")
    report = CelebA().check(tmp_path / "celeba")
    assert report["ok"], report["problems"]
    assert report["splits"] == {"train": 18, "val": 6, "test": 6}
    assert report["groups"]["val"]["Male"] == {"not_Male": 3, "Male": 3}
