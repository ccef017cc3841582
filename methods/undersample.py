"""Undersampling, SUBG (Idrissi et al., CLeaR 2022): train on one subset with every (class, group) cell cut to the
smallest cell's size.

The subset is drawn once per run, without replacement, from the run seed's generator: as many rows of every
cell as the smallest cell has.  Training is then ordinary cross-entropy on that fixed subset, in shuffled epochs
over it, for the whole step budget; the rest of the training split is never seen.  The named ablation
`undersample:per-epoch` redraws the subset at every epoch instead, so over the budget it sees most rows of the
larger cells while every epoch stays cell-balanced.
"""

from __future__ import annotations

import numpy as np
import torch

from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import LabelUse, Method
from fairfacebench.methods.common import erm_loss
from fairfacebench.training import BatchSampler, Predictor

SUBSET_STREAM = "undersample/subset"
BATCH_STREAM = "batches/undersampled"


class Undersample(Method):
    name = "undersample"
    version = 2  # v1 redrew the subset every epoch, now `undersample:per-epoch`
    description = "Cross-entropy on one fixed subset with every (class, group) cell cut to the smallest cell (SUBG)"
    citation = (
        "Idrissi, Arjovsky, Pezeshki & Lopez-Paz, Simple data balancing achieves competitive worst-group-accuracy, "
        "CLeaR 2022"
    )
    labels = LabelUse(target="train", sensitive="train")
    redraw_each_epoch = False

    def fit(self, ctx):
        cells = ctx.train.a * ctx.n_classes + ctx.train.y
        if self.redraw_each_epoch:
            sampler = UndersampledEpochs(cells, ctx.budget.batch_size, ctx.generator(BATCH_STREAM))
            ctx.log.stage("undersample", cells=len(sampler.members), rows_per_cell_per_epoch=sampler.per_cell)
        else:
            rows = balanced_subset(cells, ctx.generator(SUBSET_STREAM))
            sampler = SubsetBatches(rows, ctx.budget.batch_size, ctx.generator(BATCH_STREAM))
            n_cells = len(np.unique(cells))
            ctx.log.stage("undersample", cells=n_cells, rows_per_cell=len(rows) // n_cells, subset_rows=len(rows))
        model = ctx.new_classifier()
        ctx.train_classifier(model, ctx.budget.remaining, erm_loss, sampler=sampler)
        return Predictor(model, ctx.device)


class UndersamplePerEpoch(Undersample):
    """Ablation: the cell-balanced subset is redrawn every epoch instead of fixed once (undersample v1)."""

    name = "undersample:per-epoch"
    ablation_of = "undersample"
    version = 1
    description = "undersample with the cell-balanced subset redrawn every epoch, not fixed once (ablation)"
    redraw_each_epoch = True


def balanced_subset(cells: np.ndarray, gen: torch.Generator) -> np.ndarray:
    """Sorted row indices of `m` random rows of every cell, drawn without replacement; `m` the smallest cell's size."""
    members = [np.flatnonzero(cells == c) for c in np.unique(cells)]
    per_cell = min(len(m) for m in members)
    return np.sort(np.concatenate([m[torch.randperm(len(m), generator=gen)[:per_cell].numpy()] for m in members]))


class SubsetBatches:
    """Batches of row indices from shuffled epochs over a fixed subset of rows, deterministic given the generator."""

    def __init__(self, rows: np.ndarray, batch_size: int, gen: torch.Generator):
        self.rows = rows
        self._positions = BatchSampler(len(rows), batch_size, gen)

    def __iter__(self) -> "SubsetBatches":
        return self

    def __next__(self) -> np.ndarray:
        return self.rows[next(self._positions)]


class UndersampledEpochs:
    """Batches of row indices from successive undersampled epochs, each redrawn; deterministic given the generator."""

    def __init__(self, cells: np.ndarray, batch_size: int, gen: torch.Generator):
        self.members = [np.flatnonzero(cells == c) for c in np.unique(cells)]
        self.per_cell = min(len(m) for m in self.members)
        self.batch_size, self.gen = batch_size, gen
        self._queue = np.zeros(0, np.int64)

    def epoch(self) -> np.ndarray:
        """`per_cell` random rows of every cell, shuffled together."""
        drawn = [m[torch.randperm(len(m), generator=self.gen)[: self.per_cell].numpy()] for m in self.members]
        rows = np.concatenate(drawn)
        return rows[torch.randperm(len(rows), generator=self.gen).numpy()]

    def __iter__(self) -> "UndersampledEpochs":
        return self

    def __next__(self) -> np.ndarray:
        while len(self._queue) < self.batch_size:
            self._queue = np.concatenate([self._queue, self.epoch()])
        batch, self._queue = self._queue[: self.batch_size], self._queue[self.batch_size :]
        return batch


@hookimpl
def fairfacebench_methods():
    return [Undersample, UndersamplePerEpoch]
