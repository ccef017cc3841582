"""Unlabeled pools: a messy folder of images, and a dataset's training split without labels."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_layouts import build_pool_folder, build_utkface

from fairfacebench.data import DataError
from fairfacebench.datasets import pools
from fairfacebench.datasets.pools import DatasetTrainPool, FolderPool
from fairfacebench.datasets.utkface import UTKFace
from fairfacebench.errors import ConfigError, UnknownName
from fairfacebench.plan import resolve_pool
from fairfacebench.plugins import registry


def test_hook_returns_both_pool_plugins():
    plugins = {p.name: p for p in pools.fairfacebench_pools()}
    assert set(plugins) == {"folder", "dataset-train"}
    assert all(p.description for p in plugins.values())


def test_folder_pool_reports_duplicates_non_images_and_corrupt_files(tmp_path):
    expected = build_pool_folder(tmp_path / "pool")
    pool = FolderPool().load(tmp_path / "pool", 12, tmp_path / "cache", workers=1, progress=False)
    report = pool.report
    assert {k: report[k] for k in expected} == expected
    assert report["duplicate_of"] == {"sub/deeper/a copy.jpg": "a.jpg"}
    assert {s["file"]: s["kind"] for s in report["skipped"]} == {
        "empty.png": "not_image",
        "notes.txt": "not_image",
        "sub/broken.jpg": "corrupt",
    }
    assert sorted(pool.ids) == sorted(
        ["a.jpg", "sub/b.png", "sub/deeper/c.bmp", "d.webp", "UPPER CASE.JPEG", "no_extension", "sub/anim.gif"]
    )
    assert pool.images.shape == (7, 12, 12, 3) and pool.hidden == {}


def test_gif_contributes_its_first_frame(tmp_path):
    build_pool_folder(tmp_path / "pool")
    pool = FolderPool().load(tmp_path / "pool", 8, tmp_path / "cache", workers=1, progress=False)
    first_frame = pool.images[list(pool.ids).index("sub/anim.gif")].astype(int)
    assert (first_frame[..., 0] > 200).all() and (first_frame[..., 2] < 50).all()


def test_folder_without_images_is_an_error(tmp_path):
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "readme.txt").write_text("nothing here")
    with pytest.raises(DataError, match="no decodable image"):
        FolderPool().load(tmp_path / "pool", 8, tmp_path / "cache", workers=1, progress=False)
    with pytest.raises(DataError, match="is not a directory"):
        FolderPool().load(tmp_path / "absent", 8, tmp_path / "cache")


def test_dataset_train_pool_withholds_labels(tmp_path):
    build_utkface(tmp_path / "UTKFace")
    plugin = UTKFace()
    pool = DatasetTrainPool().load(plugin, 8, tmp_path / "cache", root=tmp_path / "UTKFace", workers=1, progress=False)
    train = plugin.load(tmp_path / "UTKFace", 8, tmp_path / "cache", workers=1, progress=False).splits["train"]
    assert pool.name == "utkface-train" and len(pool) == len(train) == 20
    np.testing.assert_array_equal(pool.images, train.images)
    assert set(pool.hidden) == set(train.labels) and pool.captions is None


def test_dataset_train_pool_is_named_by_dataset_and_unknown_names_list_the_installed_ones(tmp_path):
    build_utkface(tmp_path / "UTKFace")
    pool = DatasetTrainPool().load(
        registry().dataset("utkface"), 8, tmp_path / "cache", root=tmp_path / "UTKFace", workers=1, progress=False
    )
    assert len(pool) == 20
    synth = registry().dataset("synthfaces")
    root = str(tmp_path / "UTKFace")
    resolved = resolve_pool("dataset-train:utkface", synth, registry(), {"utkface": root})
    fingerprint = registry().dataset("utkface").fingerprint(tmp_path / "UTKFace")
    assert resolved == {"kind": "dataset-train", "source": "utkface", "root": root, "fingerprint": fingerprint}
    with pytest.raises(UnknownName, match=r"unknown dataset 'nope'; installed datasets: \[.*'utkface'"):
        resolve_pool("dataset-train:nope", synth, registry(), {})
    with pytest.raises(ConfigError, match=r"pool 'folders:/x': write auto, none or KIND:SOURCE"):
        resolve_pool("folders:/x", synth, registry(), {})
    assert resolve_pool("auto", synth, registry(), {}) == {"kind": "dataset", "source": "synthfaces"}
    assert resolve_pool("auto", registry().dataset("utkface"), registry(), {}) == {"kind": "none"}
