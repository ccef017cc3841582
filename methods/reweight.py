"""Group-balanced loss weights over (sensitive group a, target y) cells.

Two documented variants (METHODS.md):
  inverse: w(a,y) ∝ 1 / n(a,y), normalised to mean 1 over training samples;
  kamiran: w(a,y) = n(y)·n(a) / (n·n(a,y))  (Kamiran & Calders 2012, "reweighing").
"""

from __future__ import annotations

import numpy as np
import torch

from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import Hparam, LabelUse, Method, choice
from fairfacebench.methods.common import cell_counts, cross_entropy, inverse_frequency_weights
from fairfacebench.training import Predictor


def kamiran_calders_weights(y: np.ndarray, a: np.ndarray, n_classes: int, n_groups: int) -> np.ndarray:
    """Per-cell weights n(y)·n(a) / (n·n(a,y)): the expected over the observed cell frequency."""
    n = cell_counts(y, a, n_classes, n_groups).astype(np.float64)
    expected = n.sum(axis=1, keepdims=True) * n.sum(axis=0, keepdims=True) / n.sum()
    return np.divide(expected, n, out=np.zeros_like(n), where=n > 0)


class Reweight(Method):
    name = "reweight"
    description = "Cross-entropy with group-balanced loss weights per (sensitive group, class) cell"
    citation = "Kamiran & Calders, Data preprocessing techniques for classification without discrimination, KAIS 2012"
    labels = LabelUse(target="train", sensitive="train")
    space = {
        "variant": Hparam(
            "inverse", choice(["inverse", "kamiran"]), "inverse = 1/n(a,y); kamiran = n(y)n(a)/(n n(a,y))"
        )
    }

    def fit(self, ctx):
        y, a = ctx.train.y, ctx.train.a
        weigh = inverse_frequency_weights if ctx.hparams["variant"] == "inverse" else kamiran_calders_weights
        table = torch.as_tensor(weigh(y, a, ctx.n_classes, ctx.n_groups), dtype=torch.float32, device=ctx.device)
        ctx.log.stage("weights", variant=ctx.hparams["variant"], table=table.cpu().numpy().round(4).tolist())
        model = ctx.new_classifier()

        def loss(m, b):
            return cross_entropy(m(b.x), b, weights=table[b.a, b.y]).mean()

        ctx.train_classifier(model, ctx.budget.remaining, loss)
        return Predictor(model, ctx.device)


@hookimpl
def fairfacebench_methods():
    return [Reweight]
