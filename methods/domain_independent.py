"""Domain-independent training (Wang et al., CVPR 2020, Sec. 4.3): one classifier per sensitive group, shared features.

One linear layer outputs a (group, class) score grid; a training image is scored only by its own group's
classifier (softmax over that group's classes).  At inference the group is unknown, so the class scores are
summed over the groups' classifiers, ŷ = argmax_y Σ_g s_{g,y}(x) (the paper's "sum of outputs" rule).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import LabelUse, Method
from fairfacebench.training import Classifier, Predictor


def own_group_loss(scores: torch.Tensor, y: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy of each image's own group's classifier; scores (B, G, C)."""
    return F.cross_entropy(scores[torch.arange(len(y), device=y.device), a], y, reduction="none")


def summed_over_groups(scores: torch.Tensor) -> torch.Tensor:
    """Class scores with the group unknown: the sum over the groups' classifiers, (B, G, C) -> (B, C)."""
    return scores.sum(dim=1)


class GroupSummedClassifier(nn.Module):
    """The trained network at inference: features -> (G, C) scores -> summed over groups."""

    def __init__(self, model: Classifier, n_groups: int, n_classes: int):
        super().__init__()
        self.model, self.n_groups, self.n_classes = model, n_groups, n_classes

    def grid(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).view(len(x), self.n_groups, self.n_classes)

    def forward(self, x: torch.Tensor, head: str = "target") -> torch.Tensor:
        return summed_over_groups(self.grid(x))


class DomainIndependent(Method):
    name = "domain-independent"
    description = (
        "One classifier per sensitive group on a shared backbone; prediction sums the class scores over groups"
    )
    citation = (
        "Wang et al., Towards Fairness in Visual Recognition: Effective Strategies for Bias Mitigation, CVPR 2020"
    )
    labels = LabelUse(target="train", sensitive="train")

    def fit(self, ctx):
        model = ctx.new_classifier({"target": ctx.n_groups * ctx.n_classes})
        net = GroupSummedClassifier(model, ctx.n_groups, ctx.n_classes)

        def loss(m, b):
            scores = net.grid(b.x)
            per_sample = own_group_loss(scores, b.y, b.a)
            if b.perm is not None:  # MixUp/CutMix: the partner is scored by its own group's classifier too
                per_sample = b.lam * per_sample + (1 - b.lam) * own_group_loss(scores, b.y[b.perm], b.a[b.perm])
            return per_sample.mean()

        ctx.train_classifier(model, ctx.budget.remaining, loss)
        return Predictor(net, ctx.device)


@hookimpl
def fairfacebench_methods():
    return [DomainIndependent]
