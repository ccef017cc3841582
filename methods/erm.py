"""ERM: cross-entropy fine-tuning of the backbone on the target labels."""

from __future__ import annotations

from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import LabelUse, Method
from fairfacebench.methods.common import erm_loss
from fairfacebench.training import Predictor


class ERM(Method):
    name = "erm"
    description = "Empirical risk minimisation: cross-entropy fine-tuning on target labels"
    citation = "Vapnik, The Nature of Statistical Learning Theory, 1995"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        model = ctx.new_classifier()
        ctx.train_classifier(model, ctx.budget.remaining, erm_loss)
        return Predictor(model, ctx.device)


@hookimpl
def fairfacebench_methods():
    return [ERM]
