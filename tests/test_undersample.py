"""undersample is SUBG (Idrissi et al., CLeaR 2022): one cell-balanced subset, fixed for the whole run and drawn
from the run seed; undersample:per-epoch redraws it every epoch."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fairfacebench.budget import Budget, BudgetMeter
from fairfacebench.context import FitContext, FitSettings
from fairfacebench.data import make_task_data
from fairfacebench.methods.undersample import (
    SUBSET_STREAM,
    SubsetBatches,
    Undersample,
    UndersamplePerEpoch,
    balanced_subset,
)
from fairfacebench.plugins import registry
from fairfacebench.testing import SMALL_SYNTHFACES

CELLS = np.repeat([0, 1, 2, 3], [50, 7, 20, 9])


def test_balanced_subset_takes_the_smallest_cells_size_from_every_cell_and_follows_the_generator():
    rows = balanced_subset(CELLS, torch.Generator().manual_seed(0))
    assert len(set(rows)) == len(rows) == 4 * 7
    assert np.bincount(CELLS[rows]).tolist() == [7, 7, 7, 7]
    assert (rows[CELLS[rows] == 1] == np.flatnonzero(CELLS == 1)).all()  # the smallest cell is kept whole
    np.testing.assert_array_equal(rows, balanced_subset(CELLS, torch.Generator().manual_seed(0)))
    assert set(rows) != set(balanced_subset(CELLS, torch.Generator().manual_seed(1)))


def test_subset_batches_serve_the_same_rows_every_epoch_in_a_new_order():
    rows = balanced_subset(CELLS, torch.Generator().manual_seed(0))
    sampler = SubsetBatches(rows, batch_size=4, gen=torch.Generator().manual_seed(5))
    served = np.concatenate([next(sampler) for _ in range(3 * 7)])  # three epochs of 28 rows
    epochs = served.reshape(3, 28)
    for epoch in epochs:
        assert sorted(epoch) == sorted(rows)
    assert not (epochs[0] == epochs[1]).all()


@pytest.fixture(scope="module")
def synth_data():
    ds = registry().dataset("synthfaces")
    loaded = ds.load(None, 32, Path(os.environ["FAIRBENCH_CACHE"]), **SMALL_SYNTHFACES)
    return make_task_data(loaded, ds.task("smiling/skin_tone"))


def _fit(data, method, seed):
    """Fit on a tiny budget; returns the context and the training rows of every batch, in order."""
    budget = Budget("tiny", steps=10, batch_size=16)
    ctx = FitContext(data, FitSettings(method.default_hparams(), seed, budget), BudgetMeter(budget))
    served, batch = [], ctx.batch

    def spy(index, *args, **kwargs):
        served.append(np.asarray(index))
        return batch(index, *args, **kwargs)

    ctx.batch = spy
    method().fit(ctx)
    return ctx, np.concatenate(served)


def test_undersample_trains_on_one_fixed_balanced_subset_drawn_from_the_seed(synth_data):
    ctx, served = _fit(synth_data, Undersample, seed=0)
    cells = synth_data.train.a * synth_data.n_classes + synth_data.train.y
    subset = balanced_subset(cells, ctx.generator(SUBSET_STREAM))
    n = len(subset)
    assert ctx.log.stages["undersample"]["subset_rows"] == n and len(served) > 2 * n  # the budget spans 2+ epochs
    assert len(set(np.bincount(cells[subset]))) == 1 and len(np.unique(cells[subset])) == len(np.unique(cells))
    assert sorted(served[:n]) == sorted(subset) and sorted(served[n : 2 * n]) == sorted(subset)
    assert set(served) == set(subset)
    _, other_seed = _fit(synth_data, Undersample, seed=1)
    assert set(other_seed) != set(subset)


def test_undersample_per_epoch_sees_more_than_one_subset(synth_data):
    ctx, served = _fit(synth_data, UndersamplePerEpoch, seed=0)
    per_epoch = ctx.log.stages["undersample"]["rows_per_cell_per_epoch"] * ctx.log.stages["undersample"]["cells"]
    assert len(set(served)) > per_epoch
    assert UndersamplePerEpoch.ablation_of == "undersample" and Undersample.version == 2
