"""SHaSaM: submodular hard-sample mining for fair facial attribute recognition (Majee & Iyer, arXiv 2602.05162).

Two stages in one budget: (1) representation, ``rep_frac`` of the steps:
every step MINEs hard positives and negatives for each (target, sensitive)
anchor set of the batch by greedy submodular maximisation and LEARNs by
minimising the submodular CMI I_f(P; Q | A) of the anchor set Q and its hard
negatives P given its hard positives A, on a projection head; (2) the classifier:
a linear probe on the frozen encoder, or fine-tuning.  The ablation
``shasam:no-mining`` uses every candidate instead of mined subsets.
Choices the paper leaves open: docs/METHODS.md.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import Hparam, LabelUse, Method, choice, log_uniform, uniform
from fairfacebench.methods.common import erm_loss, projection_head, train_linear_probe
from fairfacebench.methods.submodular import (
    FUNCTIONS,
    AnchorSets,
    anchor_affinity,
    anchor_sets,
    fl_cmi_loss,
    fl_cmi_terms,
    gc_cmi_loss,
    logdet_cmi_loss,
    mine_hard_samples,
    similarity_kernel,
)
from fairfacebench.training import Classifier, Predictor

LEARN_LOSSES = ("fl_cmi", "gc_cmi", "logdet_cmi")
# Hyperparameters of MINE only: the ablation without mining has none of them.
MINING_HPARAMS = ("mine_function", "n_pos", "n_neg", "diversity")

Loss = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def cmi_loss(name: str, nu: float, max_temperature: float = 0.0) -> Loss:
    """The LEARN loss ``name``; ``nu`` weighs graph cut's explicit conditioning term, ``max_temperature`` smooths
    facility location's maxima (0 = exact)."""
    if name == "fl_cmi":
        return partial(fl_cmi_loss, t=max_temperature)
    if name == "gc_cmi":
        return partial(gc_cmi_loss, nu=nu)
    if name == "logdet_cmi":
        return logdet_cmi_loss
    raise ValueError(f"unknown SHaSaM loss {name!r}; choose one of {', '.join(LEARN_LOSSES)}")


class FeatureMemory:
    """FIFO memory of the detached (embedding, target, group) triples of the last ``size`` samples."""

    def __init__(self, size: int):
        self.size = size
        self.items: tuple[Tensor, Tensor, Tensor] | None = None

    def bank(self, emb: Tensor, y: Tensor, a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The mining bank: the batch first, then the memory (no gradient flows into the memory)."""
        if self.items is None:
            return emb, y, a
        mem_emb, mem_y, mem_a = self.items
        return torch.cat([emb, mem_emb.to(emb)]), torch.cat([y, mem_y.to(y)]), torch.cat([a, mem_a.to(a)])

    def push(self, emb: Tensor, y: Tensor, a: Tensor) -> None:
        if self.size <= 0:
            return
        new = (emb.detach(), y, a)
        if self.items is not None:
            new = tuple(torch.cat([old, cur]) for old, cur in zip(self.items, new))
        self.items = tuple(t[-self.size :] for t in new)


class SHaSaM(Method):
    name = "shasam"
    version = 4  # 4: smooth maxima (t = 0.05); 3: minimise I_f(P; Q | A) (2 maximised I_f(A; Q | P))
    description = (
        "Two stages: per (target, group) anchor set, greedy submodular mining of hard positives (same target, other "
        "group) and hard negatives (other target, same group); LEARN minimises the submodular CMI "
        "I_f(P; Q | A) of anchor set Q and hard negatives P given hard positives A, on a projection head; then a "
        "linear probe.  Deviations (paper text unread): the CMI's roles and sign as in the authors' SCoRe losses "
        "(information with other classes minimised), smooth maxima t log-sum-exp (t = 0.05, as in the authors' "
        "code), kernel exp((cos-1)/tau), mining objective hardness + "
        "diversity, batch-local anchor sets, CMI per ground-set element"
    )
    citation = (
        "Majee & Iyer, SHaSaM: Submodular Hard Sample Mining for Fair Facial Attribute Recognition, "
        "arXiv 2602.05162, 2026"
    )
    labels = LabelUse(target="train", sensitive="train")
    mining = True  # submodular MINE (the ablation shasam:no-mining turns it off)
    space = {
        "rep_frac": Hparam(0.7, uniform(0.5, 0.85), "share of the budget for the representation stage"),
        "loss": Hparam("fl_cmi", choice(list(LEARN_LOSSES)), "LEARN loss: facility-location, graph-cut or log-det CMI"),
        "mine_function": Hparam("facility_location", choice(list(FUNCTIONS)), "submodular function g of MINE"),
        "n_pos": Hparam(8, choice([4, 8, 16]), "hard positives mined per anchor set"),
        "n_neg": Hparam(8, choice([4, 8, 16]), "hard negatives mined per anchor set"),
        "diversity": Hparam(1.0, uniform(0.0, 2.0), "weight β of the submodular diversity term g in MINE"),
        "temperature": Hparam(0.5, log_uniform(0.1, 1.0), "temperature τ of the kernel exp((cos − 1)/τ)"),
        "max_temperature": Hparam(
            0.05, choice([0.0, 0.02, 0.05, 0.1]), "smooth maximum t of facility location in fl_cmi (0 = exact max)"
        ),
        "nu": Hparam(1.0, uniform(0.25, 1.0), "weight ν of graph cut's explicit conditioning term (gc_cmi only)"),
        "memory_size": Hparam(0, choice([0, 128, 256]), "FIFO feature memory added to the candidates (0 = batch only)"),
        "head": Hparam("linear", choice(["linear", "finetune"]), "linear probe of the frozen encoder, or fine-tuning"),
        "head_lr": Hparam(1e-2, log_uniform(1e-3, 3e-2), "learning rate of the linear probe"),
    }

    def fit(self, ctx):
        hp = ctx.hparams
        model = ctx.new_classifier()
        model.heads["projection"] = projection_head(model.heads["target"].in_features).to(ctx.device)
        steps = max(1, round(hp["rep_frac"] * ctx.budget.remaining))
        records = learn_representation(ctx, model, steps, hp, self.mining)
        ctx.log.stage("representation", steps=steps, mining=self.mining, **summarise(records))
        if hp["head"] == "finetune":
            ctx.train_classifier(model, ctx.budget.remaining, erm_loss, stage="classifier")
            return Predictor(model, ctx.device)
        return Predictor(train_linear_probe(ctx, model, ctx.budget.remaining, hp["head_lr"]), ctx.device)


class SHaSaMNoMining(SHaSaM):
    """Ablation: A and P are all positive and negative candidates of the batch, not mined subsets."""

    name = "shasam:no-mining"
    ablation_of = "shasam"
    description = "shasam without submodular mining: A and P are every positive and negative candidate (ablation)"
    mining = False
    space = {k: v for k, v in SHaSaM.space.items() if k not in MINING_HPARAMS}


def select(kernel: Tensor, sets: AnchorSets, hp: dict, mining: bool) -> tuple[Tensor, Tensor]:
    """(A, P) per anchor set: the mined subsets, or every candidate without mining."""
    if not mining:
        return sets.positives, sets.negatives
    mined = mine_hard_samples(kernel, sets, hp["n_pos"], hp["n_neg"], hp["mine_function"], diversity=hp["diversity"])
    return mined.masks(kernel.shape[0])


def learn_representation(ctx, model: Classifier, steps: int, hp: dict, mining: bool) -> list[dict[str, float]]:
    """Stage 1: MINE then LEARN on every batch; trains the backbone and the projection head, never the target head."""
    sampler = ctx.sampler(stream="batches/representation")
    gen, rng = ctx.generator("augment/representation"), ctx.rng("mix/representation")
    learn = cmi_loss(hp["loss"], hp["nu"], hp["max_temperature"])
    memory = FeatureMemory(hp["memory_size"])
    records: list[dict[str, float]] = []

    def step(_: int) -> Tensor:
        # No MixUp/CutMix: a mixed image has no single (target, group) cell.
        batch = ctx.batch(next(sampler), gen, rng, mix=False)
        emb = model.heads["projection"](model.features(batch.x))
        bank, bank_y, bank_a = memory.bank(emb, batch.y, batch.a)
        kernel = similarity_kernel(bank, hp["temperature"])
        sets = anchor_sets(bank_y, bank_a, len(emb))
        start = time.perf_counter()
        A, P = select(kernel, sets, hp, mining)
        seconds = time.perf_counter() - start
        loss = learn(kernel, sets.anchors, A, P)
        fl_t = hp["max_temperature"] if hp["loss"] == "fl_cmi" else None
        records.append(step_record(kernel.detach(), sets, A, P, seconds, loss, fl_t))
        memory.push(emb, batch.y, batch.a)
        return loss

    model.train()
    params = [*model.backbone.parameters(), *model.heads["projection"].parameters()]
    ctx.optimize(params, steps, step, lr=hp["lr"], weight_decay=hp["weight_decay"], stage="representation")
    return records


def _mean_over(values: Tensor, mask: Tensor) -> float:
    return float((values * mask).sum() / mask.sum().clamp_min(1))


def step_record(
    kernel: Tensor, sets: AnchorSets, A: Tensor, P: Tensor, seconds: float, loss: Tensor, fl_t: float | None
) -> dict[str, float]:
    """One step's mining numbers: set sizes, how much harder the selection is than the candidates, the loss."""
    affinity = anchor_affinity(kernel, sets.anchors)
    record = {
        "anchor_sets": float(len(sets.cells)),
        "anchors_per_set": float(sets.anchors.sum(1).float().mean()),
        "positive_candidates_per_set": float(sets.positives.sum(1).float().mean()),
        "negative_candidates_per_set": float(sets.negatives.sum(1).float().mean()),
        "positives_per_set": float(A.sum(1).float().mean()),
        "negatives_per_set": float(P.sum(1).float().mean()),
        "sets_with_positives": float(A.any(1).float().mean()),
        # mean kernel similarity to the anchor set: mined positives should sit lower, mined negatives higher
        "positive_similarity_candidates": _mean_over(affinity, sets.positives),
        "positive_similarity_selected": _mean_over(affinity, A),
        "negative_similarity_candidates": _mean_over(affinity, sets.negatives),
        "negative_similarity_selected": _mean_over(affinity, P),
        "mine_ms": seconds * 1e3,
        "cmi_loss": float(loss.detach()),
    }
    if fl_t is not None:  # share of FL-CMI terms with a gradient (the hinge is open)
        ground = (A | sets.anchors | P) & A.any(1, keepdim=True)
        record["active_terms"] = _mean_over((fl_cmi_terms(kernel, sets.anchors, A, P, fl_t) > 0).float(), ground)
    return record


def summarise(records: list[dict[str, float]]) -> dict[str, float]:
    """Means over the steps of every number of :func:`step_record`, plus the first and last loss (and open hinges)."""
    summary = {k: round(float(np.mean([r[k] for r in records])), 4) for k in records[0]}
    summary["mine_ms_per_step"] = summary.pop("mine_ms")
    summary["cmi_loss_first"], summary["cmi_loss_last"] = (
        round(records[0]["cmi_loss"], 4),
        round(records[-1]["cmi_loss"], 4),
    )
    if "active_terms" in records[0]:
        summary["active_terms_first"] = round(records[0]["active_terms"], 4)
        summary["active_terms_last"] = round(records[-1]["active_terms"], 4)
    return summary


@hookimpl
def fairfacebench_methods():
    return [SHaSaM, SHaSaMNoMining]
