"""GroupDRO (Sagawa et al., ICLR 2020, Algorithm 1): online exponentiated-gradient weights q over (class, group) cells.

Per step: L_g = mean loss of cell g in the batch; q_g ← q_g·exp(η(L_g + C/√n_g)),
normalised; the model descends Σ_g q_g L_g.  η, C and group-balanced batches
are documented hyperparameters (docs/METHODS.md).
"""

from __future__ import annotations

import numpy as np
import torch

from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import Hparam, LabelUse, Method, choice, log_uniform
from fairfacebench.methods.common import cell_counts, cross_entropy
from fairfacebench.training import Predictor


def group_losses(per_sample: torch.Tensor, groups: torch.Tensor, n_cells: int) -> torch.Tensor:
    """Mean loss per group, 0 for groups absent from the batch (Sagawa et al. 2020, Algorithm 1)."""
    total = per_sample.new_zeros(n_cells).index_add(0, groups, per_sample)
    count = torch.bincount(groups, minlength=n_cells).to(per_sample.dtype)
    return total / count.clamp_min(1)


def update_group_weights(q: torch.Tensor, losses: torch.Tensor, eta: float, adjustment: torch.Tensor) -> torch.Tensor:
    """One exponentiated-gradient step ``q ← q·exp(η(L + C/√n))``, renormalised (Algorithm 1 with group adjustments)."""
    q = q * torch.exp(eta * (losses.detach() + adjustment))
    return q / q.sum()


def group_adjustment(counts: np.ndarray, c: float) -> np.ndarray:
    """The generalisation adjustment C/√n_g per group; 0 for groups without training samples."""
    counts = counts.astype(np.float64)
    return np.divide(c, np.sqrt(counts), out=np.zeros_like(counts), where=counts > 0)


class GroupDRO(Method):
    name = "groupdro"
    description = "Group DRO: minimise the q-weighted (class, group) losses, q updated online towards the worst group"
    citation = "Sagawa, Koh, Hashimoto & Liang, Distributionally Robust Neural Networks for Group Shifts, ICLR 2020"
    labels = LabelUse(target="train", sensitive="train")
    space = {
        "eta": Hparam(0.1, log_uniform(0.01, 1.0), "step size η of the exponentiated-gradient update of q"),
        "adjustment": Hparam(
            0.0, choice([0.0, 1.0, 2.0, 4.0]), "group adjustment C (loss + C/sqrt(n_g)); 0 = plain GroupDRO"
        ),
        "balanced_sampling": Hparam(True, choice([True, False]), "draw each (class, group) cell equally often"),
    }

    def fit(self, ctx):
        hp = ctx.hparams
        y, a = ctx.train.y, ctx.train.a
        counts = cell_counts(y, a, ctx.n_classes, ctx.n_groups).reshape(-1)
        cell = a * ctx.n_classes + y
        adjust = torch.as_tensor(group_adjustment(counts, hp["adjustment"]), dtype=torch.float32, device=ctx.device)
        q = torch.as_tensor(counts > 0, dtype=torch.float32, device=ctx.device)
        q /= q.sum()
        sampler = ctx.sampler(weights=1.0 / counts[cell]) if hp["balanced_sampling"] else None
        model = ctx.new_classifier()

        def loss(m, b):
            nonlocal q
            per_group = group_losses(cross_entropy(m(b.x), b), b.a * ctx.n_classes + b.y, len(counts))
            q = update_group_weights(q, per_group, hp["eta"], adjust)
            return per_group @ q

        ctx.train_classifier(model, ctx.budget.remaining, loss, sampler=sampler)
        names = [f"{g}/{c}" for g in ctx.group_names for c in ctx.target_classes]
        ctx.log.stage(
            "groupdro", final_q={n: round(float(w), 4) for n, w in zip(names, q.cpu())}, train_counts=counts.tolist()
        )
        return Predictor(model, ctx.device)


@hookimpl
def fairfacebench_methods():
    return [GroupDRO]
