"""BC+BB: bias-contrastive and bias-balanced learning (Hong & Yang, NeurIPS 2021), the bias being the sensitive
attribute.

One model, one stage, the whole budget.  Every step adds two losses:

- BB, bias-balanced regression: cross-entropy of the logits shifted by log p(y | b), the empirical p(target |
  sensitive group) of the training split, on a batch of batch_size images.  The shifted softmax models the
  biased training distribution p(y | x, b) ∝ p_bal(y | x) · p(y | b), so the unshifted logits, which predict,
  learn the distribution in which target and group are independent;
- λ · BC, the bias-contrastive loss (`losses.bias_contrastive_loss`) on the L2-normalised backbone features of
  two augmented views of batch_size / 2 further images, drawn with weights 1/p(b | y) (clipped at `weight_ratio`
  times the smallest) so that same-target, other-group positives are in the batch.

Both batches together are 2 · batch_size forward samples per step, the budget's two views per step image.
Details and every deviation from the paper and its code: docs/METHODS.md.
"""

from __future__ import annotations

import numpy as np
import torch

from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import Hparam, LabelUse, Method, choice, log_uniform
from fairfacebench.methods.common import cross_entropy, views
from fairfacebench.methods.losses import bias_contrastive_loss
from fairfacebench.training import BatchSampler, Predictor

# log p(y | b) of a cell absent from training is log(0): a floor keeps it finite (as the official code does).
MIN_PRIOR = 1e-9


class BCBB(Method):
    name = "bcbb"
    description = (
        "BC+BB: bias-balanced cross-entropy (logits shifted by log p(y | group)) plus a bias-contrastive loss whose "
        "positives share the target and differ in the sensitive group"
    )
    citation = "Hong & Yang, Unbiased Classification through Bias-Contrastive and Bias-Balanced Learning, NeurIPS 2021"
    labels = LabelUse(target="train", sensitive="train")
    space = {
        "temperature": Hparam(0.07, log_uniform(0.05, 0.5), "temperature τ of the bias-contrastive loss"),
        "contrastive_weight": Hparam(
            100.0, log_uniform(1.0, 1000.0), "weight λ of the bias-contrastive term: L = L_BB + λ·L_BC"
        ),
        "weight_ratio": Hparam(
            10.0, choice([5.0, 10.0, 20.0]), "contrastive sampler: largest weight 1/p(b|y) over the smallest"
        ),
    }

    def fit(self, ctx):
        hp = ctx.hparams
        if ctx.budget.batch_size < 2:
            raise ValueError(f"bcbb needs a batch size of at least 2 (a contrastive pair), got {ctx.budget.batch_size}")
        y, a = ctx.train.y, ctx.train.a
        prior = torch.as_tensor(bias_prior(y, a, ctx.n_classes, ctx.n_groups), dtype=torch.float32)
        weights = contrastive_weights(y, a, hp["weight_ratio"])
        ctx.log.stage(
            "bias-prior",
            p_y_given_group=prior.numpy().round(4).tolist(),
            contrastive_weights=[round(float(weights.min()), 4), round(float(weights.max()), 4)],
        )
        pairs = BatchSampler(len(y), ctx.budget.batch_size // 2, ctx.generator("batches/contrastive"), weights)
        gen = ctx.generator("augment/contrastive")
        prior, targets, groups = prior.to(ctx.device), torch.as_tensor(y), torch.as_tensor(a)
        model = ctx.new_classifier()
        parts: dict[str, list[float]] = {"bb": [], "bc": []}

        def bb_plus_bc(model, batch):
            bb = cross_entropy(bias_balanced_logits(model(batch.x), batch.a, prior), batch).mean()
            index = next(pairs)
            x = torch.stack(views(ctx, ctx.train.images[index], gen), dim=1)
            z = model.features(x.flatten(0, 1)).view(len(index), 2, -1)
            bc = bias_contrastive_loss(
                z, targets[index].to(ctx.device), groups[index].to(ctx.device), temperature=hp["temperature"]
            )
            parts["bb"].append(float(bb.detach()))
            parts["bc"].append(float(bc.detach()))
            return bb + hp["contrastive_weight"] * bc

        # No MixUp/CutMix: a mixed image has no single group for its prior shift or its contrastive pairs.
        ctx.train_classifier(model, ctx.budget.remaining, bb_plus_bc, mix=False)
        ctx.log.stage("losses", **{f"{k}_first_last": [round(v[0], 4), round(v[-1], 4)] for k, v in parts.items()})
        return Predictor(model, ctx.device)


def bias_prior(y: np.ndarray, b: np.ndarray, n_classes: int, n_groups: int) -> np.ndarray:
    """The empirical p(y | b) as a (groups, classes) table; a group absent from `b` gets the uniform row."""
    counts = np.zeros((n_groups, n_classes))
    np.add.at(counts, (b, y), 1)
    totals = counts.sum(1, keepdims=True)
    return np.where(totals > 0, counts / np.maximum(totals, 1), 1.0 / n_classes)


def bias_balanced_logits(logits: torch.Tensor, b: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """Bias-balanced regression (Hong & Yang 2021): logits + log p(y | b) of each sample's group `b`.

    Trained with cross-entropy, softmax of the shifted logits fits the biased p(y | x, b); the unshifted logits
    then fit p_bal(y | x) ∝ p(y | x, b) / p(y | b), the distribution without the target–group correlation.
    """
    return logits + torch.log(prior[b] + MIN_PRIOR)


def contrastive_weights(y: np.ndarray, b: np.ndarray, ratio: float) -> np.ndarray:
    """Sampling weights 1/p(b | y) per row, clipped at `ratio` × the smallest: within each target class every
    group is drawn about equally often, so positives (same target, other group) are in the batch."""
    cell = b * (y.max() + 1) + y
    weights = np.bincount(y)[y] / np.bincount(cell)[cell]  # n(y) / n(y, b) = 1 / p(b | y)
    return np.minimum(weights, ratio * weights.min())


@hookimpl
def fairfacebench_methods():
    return [BCBB]
