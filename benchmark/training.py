"""Batch machinery under the fit context's loop: uint8 images to tensors, the augmentation family, samplers, predictors.

Augmentation is a comparison-level setting (`settings.Augment`) applied here to
whole batches of tensors, so it runs on the GPU when there is one.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch
from torch import nn

from fairfacebench.backbones import IMAGENET_MEAN, IMAGENET_STD
from fairfacebench.settings import Augment


class NonFiniteLoss(FloatingPointError):
    """The training loss became NaN or infinite."""


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N,H,W,3) -> float (N,3,H,W) in [0,1] on `device`."""
    x = np.ascontiguousarray(images)
    x = torch.from_numpy(x if x.flags.writeable else x.copy())  # read-only cache memmaps are copied per batch
    if device.type == "cuda":
        x = x.pin_memory().to(device, non_blocking=True)
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def normalize(x: torch.Tensor) -> torch.Tensor:
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean).div_(std)  # in place on the fresh difference: one allocation, the same numbers


def shift_crop(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor | None) -> torch.Tensor:
    """Each sample translated by (dy, dx) with replicated borders, mirrored first where `flip`: one gather.

    Equal to flipping, padding by replication and cropping back to (h, w), since the replicated
    border of a translation is a clamped source index; a mirror reverses the column index.
    """
    n, c, h, w = x.shape
    dev = x.device
    rows = (dy[:, None] + torch.arange(h, device=dev)[None, :]).clamp_(0, h - 1)
    cols = (dx[:, None] + torch.arange(w, device=dev)[None, :]).clamp_(0, w - 1)
    if flip is not None:
        cols = torch.where(flip[:, None], w - 1 - cols, cols)
    index = (rows[:, :, None] * w + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return torch.gather(x.reshape(n, c, h * w), 2, index).view(n, c, h, w)


def augment_batch(x: torch.Tensor, aug: Augment, gen: torch.Generator) -> torch.Tensor:
    """Flip, translate and colour-jitter a float batch in [0,1], each sample independently.

    Flip and translation are one gather (`shift_crop`); the jitter runs in place on the new tensor.
    """
    n, _, h, w = x.shape
    dev = x.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen).to(dev)

    flip = rand(n) < 0.5 if aug.flip else None
    if aug.crop > 0:
        p = aug.crop
        dy = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(dev)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(dev)
        x = shift_crop(x, dy - p, dx - p, flip)
    elif flip is not None:
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    if aug.jitter > 0:
        j = aug.jitter
        brightness = 1 + (rand(n, 1, 1, 1) * 2 - 1) * j
        contrast = 1 + (rand(n, 1, 1, 1) * 2 - 1) * j
        saturation = 1 + (rand(n, 1, 1, 1) * 2 - 1) * j
        x = x * brightness
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x.sub_(mean).mul_(contrast).add_(mean)
        gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        x.sub_(gray).mul_(saturation).add_(gray).clamp_(0, 1)
    return x


def mix_batch(
    x: torch.Tensor, aug: Augment, gen: torch.Generator, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """MixUp (Zhang et al. 2018) or CutMix (Yun et al. 2019): returns mixed x, partner permutation, weight of x."""
    n, _, h, w = x.shape
    lam = float(rng.beta(aug.mix_alpha, aug.mix_alpha))
    perm = torch.randperm(n, generator=gen).to(x.device)
    if aug.mix == "mixup":
        return lam * x + (1 - lam) * x[perm], perm, lam
    cut = math.sqrt(1 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy = int(torch.randint(0, h, (1,), generator=gen))
    cx = int(torch.randint(0, w, (1,), generator=gen))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
    lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the exact pasted area fraction
    return x, perm, lam


class BatchSampler:
    """Indices of successive batches of a split, deterministic given the generator.

    Without weights: epochs of random permutations (each example once per epoch).
    With weights: i.i.d. draws with probability proportional to the weights
    (group-balanced resampling, JTT-style up-sampling).
    """

    def __init__(self, n: int, batch_size: int, gen: torch.Generator, weights: np.ndarray | None = None):
        if n == 0:
            raise ValueError("cannot sample batches from an empty split")
        self.n, self.batch_size, self.gen = n, batch_size, gen
        self.weights = None if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float64))
        self._perm = torch.empty(0, dtype=torch.long)

    def __iter__(self) -> Iterator[np.ndarray]:
        return self

    def __next__(self) -> np.ndarray:
        if self.weights is not None:
            return torch.multinomial(self.weights, self.batch_size, replacement=True, generator=self.gen).numpy()
        while len(self._perm) < self.batch_size:
            self._perm = torch.cat([self._perm, torch.randperm(self.n, generator=self.gen)])
        idx, self._perm = self._perm[: self.batch_size], self._perm[self.batch_size :]
        return idx.numpy()


class Classifier(nn.Module):
    """Backbone features -> linear head(s).  `heads` maps a name to its number of outputs."""

    def __init__(self, backbone: nn.Module, feat_dim: int, heads: dict[str, int]):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict({k: nn.Linear(feat_dim, v) for k, v in heads.items()})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor, head: str = "target") -> torch.Tensor:
        return self.heads[head](self.backbone(x))


def predict_scores(
    model: nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 256, head: str = "target"
) -> np.ndarray:
    """Softmax scores (N, C) for uint8 images, in evaluation mode, without gradients."""
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = normalize(to_tensor(images[start : start + batch_size], device))
            out.append(torch.softmax(model(x, head=head).float(), dim=1).cpu())
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def predict_features(model: nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 256) -> np.ndarray:
    """Backbone features (N, D) for uint8 images, without gradients."""
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            out.append(model.features(normalize(to_tensor(images[start : start + batch_size], device))).float().cpu())
    model.train(was_training)
    return torch.cat(out).numpy()


class Predictor:
    """What `fit` returns: maps uint8 images to class scores (N, C)."""

    def __init__(self, model: nn.Module, device: torch.device, batch_size: int = 256):
        self.model, self.device, self.batch_size = model, device, batch_size

    def predict(self, images: np.ndarray) -> np.ndarray:
        return predict_scores(self.model, images, self.device, self.batch_size)
