"""Parts several methods share, written once: the CE loss, cell weights, projection heads, linear probes, views."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fairfacebench.context import Batch
from fairfacebench.settings import Augment
from fairfacebench.training import Classifier

# Views for contrastive learning: SimCLR-style stronger crop and colour jitter than the supervised family.
VIEW_AUGMENT = Augment(flip=True, crop=6, jitter=0.4)
PROJECTION_HIDDEN, PROJECTION_DIM = 512, 128


def cross_entropy(logits: torch.Tensor, batch: Batch, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample cross-entropy, mixing-aware; `weights` are per-sample loss weights."""
    w = torch.ones_like(batch.y, dtype=logits.dtype) if weights is None else weights
    loss = w * F.cross_entropy(logits, batch.y, reduction="none")
    if batch.perm is not None:
        mixed = F.cross_entropy(logits, batch.y[batch.perm], reduction="none")
        loss = batch.lam * loss + (1 - batch.lam) * w[batch.perm] * mixed
    return loss


def erm_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy of the target head: the loss of ERM and of every ERM stage of other methods."""
    return cross_entropy(model(batch.x), batch).mean()


def projection_head(in_dim: int, hidden: int = PROJECTION_HIDDEN, out_dim: int = PROJECTION_DIM) -> nn.Module:
    """The contrastive projection MLP ``Linear–ReLU–Linear`` of SimCLR/SupCon (Chen et al. 2020; Khosla et al. 2020)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))


def views(
    ctx, images: np.ndarray, gen: torch.Generator, augment: Augment = VIEW_AUGMENT, n: int = 2
) -> list[torch.Tensor]:
    """`n` independently augmented views of uint8 `images`, as network inputs (view k of every image, then k + 1)."""
    return [ctx.images_to_input(images, gen, augment) for _ in range(n)]


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class LinearProbe(Classifier):
    """A classifier whose backbone is frozen and kept in eval mode (BN statistics fixed): only its heads learn."""

    def __init__(self, model: Classifier):
        super().__init__(
            model.backbone, model.heads["target"].in_features, {"target": model.heads["target"].out_features}
        )
        self.heads["target"].load_state_dict(model.heads["target"].state_dict())
        for p in self.backbone.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "LinearProbe":
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor, head: str = "target") -> torch.Tensor:
        with torch.no_grad():
            feats = self.backbone(x)
        return self.heads[head](feats)


def train_linear_probe(ctx, model: Classifier, steps: int, lr: float, stage: str = "probe") -> LinearProbe:
    """The linear evaluation protocol: cross-entropy on a linear head over the frozen encoder's features."""
    probe = LinearProbe(model).to(ctx.device)
    sampler = ctx.sampler(stream=f"batches/{stage}")
    gen, rng = ctx.generator(f"augment/{stage}"), ctx.rng(f"mix/{stage}")
    probe.train()

    def step(_: int) -> torch.Tensor:
        return erm_loss(probe, ctx.batch(next(sampler), gen, rng))

    ctx.optimize(probe.heads.parameters(), steps, step, lr=lr, weight_decay=0.0, stage=stage)
    return probe


def cell_counts(y: np.ndarray, a: np.ndarray, n_classes: int, n_groups: int) -> np.ndarray:
    """n(a, y) as an (n_groups, n_classes) array."""
    return np.bincount(a * n_classes + y, minlength=n_groups * n_classes).reshape(n_groups, n_classes)


def inverse_frequency_weights(y: np.ndarray, a: np.ndarray, n_classes: int, n_groups: int) -> np.ndarray:
    """Per-cell weights ∝ 1/n(a,y), scaled so the mean weight over the samples is 1."""
    n = cell_counts(y, a, n_classes, n_groups).astype(np.float64)
    w = np.divide(1.0, n, out=np.zeros_like(n), where=n > 0)
    return w / w[a, y].mean()
