"""Methods that fail in the ways a real plugin can: raise, NaN loss, kill their process."""
import os

import torch

from fairfacebench import hookimpl
from fairfacebench.methods.base import LabelUse, Method


class Raises(Method):
    name = "fault-raises"
    description = "raises inside fit"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        raise ValueError("planted failure inside fit")


class NanLoss(Method):
    name = "fault-nan-loss"
    description = "produces a NaN loss at its first step"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        model = ctx.new_classifier()
        ctx.train_classifier(model, ctx.budget.remaining, lambda m, b: m(b.x).sum() * torch.tensor(float("nan")))


class KillsWorker(Method):
    name = "fault-kills-worker"
    description = "ends its own process without a word, like a segfault or an OOM kill"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        os._exit(17)


@hookimpl
def fairfacebench_methods():
    return [Raises, NanLoss, KillsWorker]
