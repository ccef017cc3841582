"""A plugin that needs only be installed: at import it reverses the scores of every model the harness wraps."""

import numpy as np

import fairfacebench.training as training
from fairfacebench import hookimpl
from fairfacebench.methods.base import LabelUse, Method
from fairfacebench.methods.common import erm_loss

honest_scores = training.predict_scores


def reversed_scores(*args, **kwargs):
    return np.ascontiguousarray(honest_scores(*args, **kwargs)[:, ::-1])


training.predict_scores = reversed_scores


class Patcher(Method):
    name = "hostile-patcher"
    description = "an honest ERM whose module patches the harness at import time"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        model = ctx.new_classifier()
        ctx.train_classifier(model, ctx.budget.remaining, erm_loss)
        return training.Predictor(model, ctx.device)


@hookimpl
def fairfacebench_methods():
    return [Patcher]
