"""SimCLR (Chen et al., ICML 2020): NT-Xent pretraining on unlabeled images, then fine-tuning or a linear probe.

Within the one budget: `pretrain_frac` of the steps pretrain the backbone and
a projection MLP on two views of images drawn from the training images
(labels unread) plus the unlabeled pool; the projection is dropped and the
rest of the steps train the classifier on the target labels, fine-tuning all
of it (default) or, the paper's linear evaluation, a linear probe
(`head="linear"`).  Why fine-tuning is the default: docs/METHODS.md.
"""

from __future__ import annotations

import numpy as np
import torch

from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import Hparam, LabelUse, Method, choice, log_uniform, uniform
from fairfacebench.methods.common import erm_loss, projection_head, train_linear_probe, views
from fairfacebench.methods.losses import nt_xent_loss
from fairfacebench.training import BatchSampler, Classifier, Predictor

# The paper's linear-evaluation protocol, named on the leaderboard beside the default fine-tuning.
VARIANT_LINEAR = "linear-eval"


class SimCLR(Method):
    name = "simclr"
    description = (
        "NT-Xent pretraining on unlabeled train + pool images, then fine-tuning or a linear probe on target labels"
    )
    citation = "Chen et al., A Simple Framework for Contrastive Learning of Visual Representations, ICML 2020"
    labels = LabelUse(target="train", note="pretraining: no labels (train images + unlabeled pool)")
    needs_pool = True
    space = {
        "pretrain_frac": Hparam(0.5, uniform(0.3, 0.8), "share of the step budget spent on NT-Xent pretraining"),
        "temperature": Hparam(0.5, log_uniform(0.1, 1.0), "NT-Xent temperature τ"),
        "proj_dim": Hparam(128, choice([64, 128, 256]), "output size of the projection head"),
        "head": Hparam(
            "finetune", choice(["linear", "finetune"]), "after pretraining: fine-tune all, or a linear probe"
        ),
        "head_lr": Hparam(1e-2, log_uniform(3e-3, 3e-2), "learning rate of the linear probe (fine-tuning uses lr)"),
    }

    def fit(self, ctx):
        hp = ctx.hparams
        model = ctx.new_classifier()
        images = unlabeled_images(ctx)
        pretrain(ctx, model, images, round(hp["pretrain_frac"] * ctx.budget.remaining))
        stage = f"probe-{hp['head']}"
        if hp["head"] == "linear":
            ctx.log.variant = VARIANT_LINEAR
            model = train_linear_probe(ctx, model, ctx.budget.remaining, hp["head_lr"], stage=stage)
        else:
            ctx.train_classifier(model, ctx.budget.remaining, erm_loss, stage=stage)
        return Predictor(model, ctx.device)


def unlabeled_images(ctx) -> np.ndarray:
    """Training images (labels unread) plus the unlabeled pool, if the run has one."""
    pool = ctx.pool
    parts = [ctx.train.images] + ([pool.images] if pool is not None else [])
    ctx.log.stage(
        "pretrain-data",
        train_images=len(ctx.train),
        pool_images=0 if pool is None else len(pool),
        pool=None if pool is None else pool.name,
    )
    return np.concatenate(parts)


def pretrain(ctx, model: Classifier, images: np.ndarray, steps: int) -> list[float]:
    """NT-Xent on two augmented views of each batch image; the projection MLP is discarded afterwards (Sec. 2.1)."""
    feat_dim = model.heads["target"].in_features
    projector = projection_head(feat_dim, hidden=feat_dim, out_dim=ctx.hparams["proj_dim"]).to(ctx.device)
    sampler = BatchSampler(len(images), ctx.budget.batch_size, ctx.generator("simclr/batches"))
    gen = ctx.generator("simclr/views")
    model.train()

    def step(_: int) -> torch.Tensor:
        z1, z2 = projector(model.features(torch.cat(views(ctx, images[next(sampler)], gen)))).chunk(2)
        return nt_xent_loss(z1, z2, ctx.hparams["temperature"])

    losses = ctx.optimize(
        [*model.parameters(), *projector.parameters()],
        steps,
        step,
        lr=ctx.hparams["lr"],
        weight_decay=ctx.hparams["weight_decay"],
        stage="nt-xent",
    )
    ctx.log.stage(
        "nt-xent",
        steps=steps,
        first_loss=round(losses[0], 4) if losses else None,
        last_loss=round(losses[-1], 4) if losses else None,
    )
    return losses


@hookimpl
def fairfacebench_methods():
    return [SimCLR]
