"""FSCL: fair supervised contrastive learning (Park et al., CVPR 2022).

1. representation, ``pretrain_frac`` of the budget: the backbone and a
   two-layer MLP projection head are trained with ``fair_supcon_loss``
   (the paper's FSCL loss, as in the official code): positives share the anchor's
   target, the denominator holds only negatives of the anchor's own
   sensitive group, so nothing is gained by separating groups.  Each step
   takes two augmented views of batch_size/2 images, so a step costs as many
   forward passes as one step of the other methods;
2. classifier, the rest of the budget: a linear probe with cross-entropy on
   the frozen encoder (the paper's linear evaluation; features in evaluation
   mode), or fine-tuning of encoder and head (``head="finetune"``).

``group_norm=True`` is FSCL+ (group-wise normalisation of the anchors).
MixUp/CutMix, when the comparison asks for them, apply to stage 2 only:
mixed images have no single (target, group) label for the contrastive pairs.
"""
from __future__ import annotations

import torch
from torch import nn

from fairfacebench.context import cross_entropy
from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import Hparam, LabelUse, Method, choice, log_uniform, uniform
from fairfacebench.methods.losses import fair_supcon_loss
from fairfacebench.training import BatchSampler, Predictor

PROJECTION_HIDDEN, PROJECTION_DIM = 512, 128


def projection_head(in_dim: int, hidden: int = PROJECTION_HIDDEN, out_dim: int = PROJECTION_DIM) -> nn.Module:
    """The contrastive projection MLP ``Linear–ReLU–Linear`` of SimCLR/SupCon (Chen et al. 2020; Khosla et al. 2020)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))


class FSCL(Method):
    name = "fscl"
    description = "Fair supervised contrastive pretraining (negatives from the anchor's own group only), then a linear head"
    citation = "Park et al., Fair Contrastive Learning for Facial Attribute Classification, CVPR 2022"
    labels = LabelUse(target="train", sensitive="train")
    hparams = {
        "pretrain_frac": Hparam(0.7, uniform(0.5, 0.85), "share of the budget for contrastive pretraining"),
        "temperature": Hparam(0.1, log_uniform(0.05, 0.5), "temperature τ of the contrastive loss"),
        "group_norm": Hparam(False, choice([False, True]), "FSCL+: group-wise normalisation"),
        "head": Hparam("linear", choice(["linear", "finetune"]), "linear probe of the frozen encoder, or fine-tuning"),
        "head_lr": Hparam(1e-2, log_uniform(1e-3, 3e-2), "learning rate of the linear probe"),
    }

    def fit(self, ctx):
        hp = ctx.hparams
        pretrain_steps = max(1, int(round(hp["pretrain_frac"] * ctx.budget.remaining)))
        model = ctx.new_classifier()
        model.heads["projection"] = projection_head(model.heads["target"].in_features).to(ctx.device)
        sampler = BatchSampler(len(ctx.train), max(2, ctx.budget.budget.batch_size // 2), ctx.generator("batches/pretrain"))
        gen = ctx.generator("augment/pretrain")
        images, y, a = ctx.train.images, torch.as_tensor(ctx.train.y), torch.as_tensor(ctx.train.a)

        def contrastive_step(_):
            index = next(sampler)
            views = torch.stack([ctx.images_to_input(images[index], gen) for _ in range(2)], dim=1)
            z = model.heads["projection"](model.features(views.flatten(0, 1))).view(len(index), 2, -1)
            return fair_supcon_loss(z, y[index].to(ctx.device), a[index].to(ctx.device), temperature=hp["temperature"],
                                    group_norm=hp["group_norm"])

        model.train()
        pretrain_params = [*model.backbone.parameters(), *model.heads["projection"].parameters()]
        losses = ctx.optimize(pretrain_params, pretrain_steps, contrastive_step, lr=hp["lr"],
                              weight_decay=hp["weight_decay"], stage="pretrain")
        ctx.log.stage("pretrain", steps=pretrain_steps, first_loss=round(losses[0], 4), last_loss=round(losses[-1], 4))

        if hp["head"] == "finetune":
            ctx.train_classifier(model, ctx.budget.remaining, lambda m, b: cross_entropy(m(b.x), b).mean(), stage="classifier")
        else:
            linear_probe(ctx, model, hp["head_lr"])
        return Predictor(model, ctx.device)


def linear_probe(ctx, model: nn.Module, lr: float) -> list[float]:
    """Cross-entropy on the target head over frozen encoder features, for the rest of the budget."""
    sampler = ctx.sampler(stream="batches/probe")
    gen, rng = ctx.generator("augment/probe"), ctx.rng("mix/probe")
    model.eval()

    def step(_):
        batch = ctx.batch(next(sampler), gen, rng)
        with torch.no_grad():
            feats = model.features(batch.x)
        return cross_entropy(model.heads["target"](feats), batch).mean()

    return ctx.optimize(model.heads["target"].parameters(), ctx.budget.remaining, step, lr=lr, weight_decay=0.0, stage="probe")


@hookimpl
def fairfacebench_methods():
    return [FSCL]
