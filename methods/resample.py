"""Group-balanced resampling: every (sensitive group, class) cell is drawn equally often."""

from __future__ import annotations

from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import LabelUse, Method
from fairfacebench.methods.common import erm_loss, inverse_frequency_weights
from fairfacebench.training import Predictor


class Resample(Method):
    name = "resample"
    description = "Cross-entropy on batches drawn with equal probability per (sensitive group, class) cell"
    citation = "Idrissi et al., Simple data balancing achieves competitive worst-group-accuracy, CLeaR 2022"
    labels = LabelUse(target="train", sensitive="train")

    def fit(self, ctx):
        y, a = ctx.train.y, ctx.train.a
        probs = inverse_frequency_weights(y, a, ctx.n_classes, ctx.n_groups)[a, y]
        model = ctx.new_classifier()
        sampler = ctx.sampler(weights=probs / probs.sum())
        ctx.train_classifier(model, ctx.budget.remaining, erm_loss, sampler=sampler)
        return Predictor(model, ctx.device)


@hookimpl
def fairfacebench_methods():
    return [Resample]
