"""synthfaces renders its world once per (options, size) into the cache; later loads read the same arrays."""

import numpy as np
import pytest

import fairfacebench.datasets.synthfaces as synthfaces
from fairfacebench.datasets.synthfaces import SynthFaces

SMALL = {"n_train": 60, "n_val": 24, "n_test": 24, "n_pool": 40}


def _fail(*args, **kwargs):
    raise AssertionError("rendered again instead of read from the cache")


def test_cached_world_equals_the_rendered_one_and_is_not_rendered_again(tmp_path, monkeypatch):
    plugin = SynthFaces()
    fresh = plugin.load(None, 32, None, **SMALL)
    first = plugin.load(None, 32, tmp_path, **SMALL)
    monkeypatch.setattr(synthfaces, "make_split", _fail)
    again = plugin.load(None, 32, tmp_path, **SMALL)
    for loaded in (first, again):
        assert loaded.info == fresh.info
        for name, split in fresh.splits.items():
            assert np.array_equal(loaded.splits[name].images, split.images)
            assert np.array_equal(loaded.splits[name].ids, split.ids)
            assert loaded.splits[name].labels.keys() == split.labels.keys()
            assert all(np.array_equal(loaded.splits[name].labels[k], v) for k, v in split.labels.items())
    with pytest.raises(AssertionError, match="rendered again"):
        plugin.load(None, 32, tmp_path, **{**SMALL, "seed": 1})  # other options: another world


def test_cached_pool_keeps_its_hidden_truth_and_report(tmp_path, monkeypatch):
    plugin = SynthFaces()
    fresh = plugin.pool(None, 32, None, **SMALL)
    plugin.pool(None, 32, tmp_path, **SMALL)
    monkeypatch.setattr(synthfaces, "make_pool", _fail)
    cached = plugin.pool(None, 32, tmp_path, **SMALL)
    assert np.array_equal(cached.images, fresh.images) and np.array_equal(cached.ids, fresh.ids)
    assert cached.hidden.keys() == fresh.hidden.keys()
    assert all(np.array_equal(cached.hidden[k], v) for k, v in fresh.hidden.items())
    assert cached.report == fresh.report and cached.name == fresh.name
