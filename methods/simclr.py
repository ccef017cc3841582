"""SimCLR: contrastive pretraining on unlabeled images, then a linear probe or fine-tuning.

Chen, Kornblith, Norouzi & Hinton, "A Simple Framework for Contrastive
Learning of Visual Representations", ICML 2020.  Within the one step budget:

1. pretrain the backbone and a 2-layer projection head with NT-Xent (Eq. 1,
   `nt_xent_loss`) on two augmented views of every image in a batch drawn
   from the training images *without labels* plus the dataset's unlabeled
   pool (when it has one); `pretrain_fraction` of the steps;
2. drop the projection head and train a linear classifier on the target
   labels of the training split: on frozen features ("linear" probe, the
   paper's evaluation protocol) or together with the backbone ("finetune").

Views use SimCLR-style stronger crop and colour jitter than the supervised
augmentation family; the supervised stage uses the comparison's family.
Fine-tuning is the default: on synthfaces the smile cue is not linearly
readable from ImageNet features (a logistic probe reaches 0.52 at 48 px), and
within CPU budgets a linear probe stays at chance (measured: 0.51 test
accuracy at the default budget).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fairfacebench.context import cross_entropy
from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import Hparam, LabelUse, Method, choice, log_uniform, uniform
from fairfacebench.methods.losses import nt_xent_loss
from fairfacebench.training import Augment, BatchSampler, Classifier, Predictor

VIEW_AUGMENT = Augment(flip=True, crop=6, jitter=0.4)


class SimCLR(Method):
    name = "simclr"
    description = "NT-Xent pretraining on unlabeled train + pool images, then a linear probe or fine-tuning on target labels"
    citation = "Chen et al., A Simple Framework for Contrastive Learning of Visual Representations, ICML 2020"
    labels = LabelUse(target="train", note="pretraining: no labels (train images + unlabeled pool)")
    needs_pool = True
    hparams = {
        "pretrain_fraction": Hparam(0.5, uniform(0.3, 0.8), "share of the step budget spent on NT-Xent pretraining"),
        "temperature": Hparam(0.5, log_uniform(0.1, 1.0), "NT-Xent temperature τ"),
        "proj_dim": Hparam(128, choice([64, 128, 256]), "output size of the projection head"),
        "probe": Hparam("finetune", choice(["linear", "finetune"]), "after pretraining: fine-tune all, or a linear probe on frozen features"),
        "probe_lr": Hparam(1e-2, log_uniform(3e-3, 3e-2), "learning rate of the linear probe (fine-tuning uses lr)"),
    }

    def fit(self, ctx):
        hp = ctx.hparams
        model = ctx.new_classifier()
        images = unlabeled_images(ctx)
        pretrain(ctx, model, images, round(hp["pretrain_fraction"] * ctx.budget.remaining))
        if hp["probe"] == "linear":
            model = LinearProbe(model).to(ctx.device)
        lr = hp["probe_lr"] if hp["probe"] == "linear" else hp["lr"]
        ctx.train_classifier(model, ctx.budget.remaining, lambda m, b: cross_entropy(m(b.x), b).mean(), lr=lr, stage=f"probe-{hp['probe']}")
        return Predictor(model, ctx.device)


def unlabeled_images(ctx) -> np.ndarray:
    """Training images (labels unread) plus the unlabeled pool, if the dataset has one."""
    pool = ctx.pool
    parts = [ctx.train.images] + ([pool.images] if pool is not None else [])
    ctx.log.stage("pretrain-data", train_images=len(ctx.train), pool_images=0 if pool is None else len(pool),
                  pool=None if pool is None else pool.name)
    return np.concatenate(parts)


def pretrain(ctx, model: Classifier, images: np.ndarray, steps: int) -> list[float]:
    """NT-Xent on two augmented views of each batch image; the projection MLP is discarded afterwards (Sec. 2.1)."""
    feat_dim = model.heads["target"].in_features
    projector = nn.Sequential(nn.Linear(feat_dim, feat_dim), nn.ReLU(), nn.Linear(feat_dim, ctx.hparams["proj_dim"])).to(ctx.device)
    sampler = BatchSampler(len(images), ctx.budget.budget.batch_size, ctx.generator("simclr/batches"))
    gen = ctx.generator("simclr/views")
    model.train()

    def step(_: int) -> torch.Tensor:
        idx = next(sampler)
        x = torch.cat([ctx.images_to_input(images[idx], gen, VIEW_AUGMENT) for _ in range(2)])
        z1, z2 = projector(model.features(x)).chunk(2)
        return nt_xent_loss(z1, z2, ctx.hparams["temperature"])

    losses = ctx.optimize([*model.parameters(), *projector.parameters()], steps, step, lr=ctx.hparams["lr"],
                          weight_decay=ctx.hparams["weight_decay"], stage="nt-xent")
    ctx.log.stage("nt-xent", steps=steps, first_loss=round(losses[0], 4) if losses else None, last_loss=round(losses[-1], 4) if losses else None)
    return losses


class LinearProbe(Classifier):
    """The pretrained classifier with its backbone frozen and kept in eval mode (BN statistics fixed)."""

    def __init__(self, model: Classifier):
        super().__init__(model.backbone, model.heads["target"].in_features, {"target": model.heads["target"].out_features})
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


@hookimpl
def fairfacebench_methods():
    return [SimCLR]
