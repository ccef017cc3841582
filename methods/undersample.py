"""Undersampling (Idrissi et al., CLeaR 2022, "SUBG"): every (class, group) cell drawn down to the smallest cell's size.

Each epoch draws, without replacement, as many rows from every cell as the smallest cell has, shuffles them,
and serves batches from that epoch; the next epoch draws anew, so over the budget the larger cells' rows are
all seen while every batch stays cell-balanced in expectation.
"""

from __future__ import annotations

import numpy as np
import torch

from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import LabelUse, Method
from fairfacebench.methods.common import erm_loss
from fairfacebench.training import Predictor


class UndersampledEpochs:
    """Batches of row indices from successive undersampled epochs, deterministic given the generator."""

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


class Undersample(Method):
    name = "undersample"
    description = (
        "Cross-entropy on epochs that draw every (class, group) cell down to the smallest cell, redrawn each epoch"
    )
    citation = (
        "Idrissi, Arjovsky, Pezeshki & Lopez-Paz, Simple data balancing achieves competitive worst-group-accuracy, "
        "CLeaR 2022"
    )
    labels = LabelUse(target="train", sensitive="train")

    def fit(self, ctx):
        cells = ctx.train.a * ctx.n_classes + ctx.train.y
        sampler = UndersampledEpochs(cells, ctx.budget.batch_size, ctx.generator("batches/undersampled"))
        ctx.log.stage("undersample", cells=int(len(sampler.members)), rows_per_cell_per_epoch=sampler.per_cell)
        model = ctx.new_classifier()
        ctx.train_classifier(model, ctx.budget.remaining, erm_loss, sampler=sampler)
        return Predictor(model, ctx.device)


@hookimpl
def fairfacebench_methods():
    return [Undersample]
