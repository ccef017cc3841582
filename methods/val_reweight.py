"""Validation-driven (class, group) loss weights: the "attention score" of seed 001 (Oehri et al., KTH 2023).

Once per epoch each cell's weight moves towards its relative validation
error: w ← (1 − m)·w + m·score^β, score(y,a) = (err(y,a) + δ)/mean(err + δ),
normalised to mean 1 over training samples.  The update rule the project
leaves open and the multi-task option: docs/METHODS.md.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import Hparam, LabelUse, Method, choice, uniform
from fairfacebench.methods.common import cross_entropy
from fairfacebench.training import Predictor, predict_scores

SMOOTH = 0.01


def cell_accuracy(y: np.ndarray, a: np.ndarray, pred: np.ndarray, n_classes: int, n_groups: int) -> np.ndarray:
    """Accuracy per (group, class) cell; NaN for empty cells."""
    cell = a * n_classes + y
    total = np.bincount(cell, minlength=n_groups * n_classes)
    correct = np.bincount(cell, weights=(pred == y).astype(np.float64), minlength=n_groups * n_classes)
    return np.divide(correct, total, out=np.full(total.shape, np.nan), where=total > 0).reshape(n_groups, n_classes)


def attention_scores(acc: np.ndarray) -> np.ndarray:
    """Relative error of each cell: > 1 for under-performing cells, < 1 for over-performing ones."""
    err = 1.0 - acc + SMOOTH
    return np.where(np.isnan(err), 1.0, err / np.nanmean(err))


def update_weights(
    w: np.ndarray, scores: np.ndarray, strength: float, momentum: float, train_cells: np.ndarray
) -> np.ndarray:
    """Move the cell weights towards score**strength and renormalise to mean 1 over training samples."""
    w = (1 - momentum) * w + momentum * scores**strength
    return w / w.flat[train_cells].mean()


class ValReweight(Method):
    name = "val-reweight"
    version = 2  # 2: reports the per-cell accuracy spread it drives down
    description = (
        "Per-(class, group) loss weights updated each epoch from validation accuracy (attention score); the seed's "
        "classes were race x gender of one joint task, so (class, group) cells are its classes here"
    )
    citation = "Oehri, Vetterli & Jarvers, Exploring Fairness in the Classification of Faces, KTH DD2424 project, 2023"
    labels = LabelUse(target="train+val", sensitive="train+val")
    space = {
        "strength": Hparam(1.0, uniform(0.5, 2.0), "exponent β on the attention score"),
        "momentum": Hparam(0.5, uniform(0.2, 1.0), "how far each update moves the weights"),
        "min_updates": Hparam(4, choice([3, 4, 6]), "at least this many weight updates within the budget"),
        "multitask": Hparam(False, choice([False, True]), "add a head predicting the sensitive group"),
        "multitask_weight": Hparam(0.5, uniform(0.1, 1.0), "loss weight of the sensitive-group head"),
    }

    reweighting = True  # apply the attention-score updates (the ablation val-reweight:uniform-weights does not)

    def fit(self, ctx):
        hp = ctx.hparams
        heads = {"target": ctx.n_classes, **({"sensitive": ctx.n_groups} if hp["multitask"] else {})}
        model = ctx.new_classifier(heads)
        steps = ctx.budget.remaining
        per_epoch = math.ceil(len(ctx.train) / ctx.budget.batch_size)
        every = max(1, min(per_epoch, steps // hp["min_updates"]))
        train_cells = ctx.train.a * ctx.n_classes + ctx.train.y
        weights = np.ones((ctx.n_groups, ctx.n_classes))
        table = torch.ones(ctx.n_groups, ctx.n_classes, device=ctx.device)
        val_y, val_a = ctx.val.y, ctx.val.a

        def loss(m, b):
            feats = m.features(b.x)
            total = cross_entropy(m.heads["target"](feats), b, weights=table[b.a, b.y]).mean()
            if hp["multitask"]:
                total = total + hp["multitask_weight"] * torch.nn.functional.cross_entropy(
                    m.heads["sensitive"](feats), b.a
                )
            return total

        def refresh(step):
            nonlocal weights
            with ctx.stage("val-update"):
                pred = predict_scores(model, ctx.val.images, ctx.device).argmax(1)
            acc = cell_accuracy(val_y, val_a, pred, ctx.n_classes, ctx.n_groups)
            if self.reweighting:
                weights = update_weights(weights, attention_scores(acc), hp["strength"], hp["momentum"], train_cells)
                table.copy_(torch.as_tensor(weights, dtype=torch.float32))
            # what the seed drives down: the spread of per-class accuracies (here per (class, group) cell)
            ctx.log.stage(
                f"update@{step + 1}",
                val_cell_acc=np.round(acc, 4).tolist(),
                val_cell_acc_std=round(float(np.nanstd(acc)), 4),
                weights=np.round(weights, 4).tolist(),
            )

        ctx.train_classifier(model, steps, loss, every=every, callback=refresh)
        return Predictor(model, ctx.device)


class ValReweightUniform(ValReweight):
    """Ablation: the same training and validation passes, every cell's weight kept at 1."""

    name = "val-reweight:uniform-weights"
    ablation_of = "val-reweight"
    description = "val-reweight with its weights held uniform (ablation)"
    reweighting = False


@hookimpl
def fairfacebench_methods():
    return [ValReweight, ValReweightUniform]
