"""FSCL: fair supervised contrastive learning (Park et al., CVPR 2022).

Stage 1 (`pretrain_frac` of the budget): the FSCL loss on two views of every
batch image (two forward samples each, as every contrastive method), positives
share the anchor's target, the denominator holds only negatives of the
anchor's own group; stage 2: a linear probe on the frozen encoder (or
fine-tuning).  `group_norm=True` is FSCL+.  Details: docs/METHODS.md.
"""

from __future__ import annotations

import torch

from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import Hparam, LabelUse, Method, choice, log_uniform, uniform
from fairfacebench.methods.common import erm_loss, projection_head, train_linear_probe, views
from fairfacebench.methods.losses import fair_supcon_loss
from fairfacebench.training import BatchSampler, Predictor


class FSCL(Method):
    name = "fscl"
    description = (
        "Fair supervised contrastive pretraining (negatives from the anchor's own group only), then a linear head"
    )
    citation = "Park et al., Fair Contrastive Learning for Facial Attribute Classification, CVPR 2022"
    labels = LabelUse(target="train", sensitive="train")
    space = {
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
        sampler = BatchSampler(len(ctx.train), ctx.budget.batch_size, ctx.generator("batches/pretrain"))
        gen = ctx.generator("augment/pretrain")
        images, y, a = ctx.train.images, torch.as_tensor(ctx.train.y), torch.as_tensor(ctx.train.a)

        def contrastive_step(_):
            index = next(sampler)
            x = torch.stack(views(ctx, images[index], gen, ctx.augment), dim=1)
            z = model.heads["projection"](model.features(x.flatten(0, 1))).view(len(index), 2, -1)
            return fair_supcon_loss(
                z,
                y[index].to(ctx.device),
                a[index].to(ctx.device),
                temperature=hp["temperature"],
                group_norm=hp["group_norm"],
            )

        model.train()
        pretrain_params = [*model.backbone.parameters(), *model.heads["projection"].parameters()]
        losses = ctx.optimize(
            pretrain_params,
            pretrain_steps,
            contrastive_step,
            lr=hp["lr"],
            weight_decay=hp["weight_decay"],
            stage="pretrain",
        )
        ctx.log.stage("pretrain", steps=pretrain_steps, first_loss=round(losses[0], 4), last_loss=round(losses[-1], 4))

        if hp["head"] == "finetune":
            ctx.train_classifier(model, ctx.budget.remaining, erm_loss, stage="classifier")
        else:
            model = train_linear_probe(ctx, model, ctx.budget.remaining, hp["head_lr"])
        return Predictor(model, ctx.device)


@hookimpl
def fairfacebench_methods():
    return [FSCL]
