"""Adversarial debiasing through gradient reversal (Ganin & Lempitsky 2015; Zhang, Lemoine & Mitchell 2018).

An adversary (a two-layer MLP) predicts the sensitive group from the backbone's features through a gradient
reversal layer: the adversary learns to predict the group, the backbone learns to make that impossible while
predicting the target.  loss = CE(y) + CE_adv(a), the reversal scaled by λ(t) = adv_weight·(2/(1+e^{-10p}) − 1),
p = t/T, Ganin's ramp-up so the adversary starts weak.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import Hparam, LabelUse, Method, choice, log_uniform
from fairfacebench.methods.common import cross_entropy
from fairfacebench.training import Predictor


class GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by −λ (Ganin & Lempitsky 2015, Eq. 13)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: float) -> torch.Tensor:
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.lam * grad, None


def reverse_gradient(x: torch.Tensor, lam: float) -> torch.Tensor:
    return GradientReversal.apply(x, lam)


def ramp(progress: float) -> float:
    """Ganin's schedule 2/(1+exp(−10p)) − 1: 0 at the start, about 1 by a third of training."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


class Adversarial(Method):
    name = "adversarial"
    description = "Cross-entropy plus a sensitive-attribute adversary on the features through gradient reversal"
    citation = (
        "Ganin & Lempitsky, Unsupervised Domain Adaptation by Backpropagation, ICML 2015; "
        "Zhang, Lemoine & Mitchell, Mitigating Unwanted Biases with Adversarial Learning, AIES 2018"
    )
    labels = LabelUse(target="train", sensitive="train")
    space = {
        "adv_weight": Hparam(1.0, log_uniform(0.1, 3.0), "scale of the reversed adversary gradient (λ after ramp-up)"),
        "adv_hidden": Hparam(256, choice([128, 256, 512]), "hidden units of the adversary MLP"),
    }

    def fit(self, ctx):
        hp = ctx.hparams
        model = ctx.new_classifier()
        dim = model.heads["target"].in_features
        model.heads["adversary"] = nn.Sequential(
            nn.Linear(dim, hp["adv_hidden"]), nn.ReLU(), nn.Linear(hp["adv_hidden"], ctx.n_groups)
        ).to(ctx.device)
        steps, start = ctx.budget.remaining, ctx.budget.used

        def loss(m, b):
            feats = m.features(b.x)
            lam = hp["adv_weight"] * ramp((ctx.budget.used - start) / max(1, steps - 1))
            adversary = m.heads["adversary"](reverse_gradient(feats, lam))
            return cross_entropy(m.heads["target"](feats), b).mean() + F.cross_entropy(adversary, b.a)

        ctx.train_classifier(model, steps, loss)
        return Predictor(model, ctx.device)


@hookimpl
def fairfacebench_methods():
    return [Adversarial]
