"""SHaSaM: submodular hard-sample mining for fair facial attribute recognition (Majee & Iyer, arXiv 2602.05162).

Every step MINEs, per anchor, hard positives (same target, other group, far)
and hard negatives (other target, same group, near) by greedy submodular
maximisation over the batch (and an optional feature memory), then LEARNs
with a conditional-mutual-information loss (FL, GC or LogDet CMI) jointly
with cross-entropy.  Defaults and why they differ from the exact CMI: docs/METHODS.md.
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
from fairfacebench.methods.common import cross_entropy, projection_head
from fairfacebench.methods.submodular import (
    FUNCTIONS,
    MinedSets,
    fl_cmi_loss,
    gc_cmi_loss,
    logdet_cmi_loss,
    mine_hard_samples,
)
from fairfacebench.training import Predictor

LEARN_LOSSES = ("fl_cmi", "gc_cmi", "logdet_cmi")


def cmi_loss(name: str, nu: float, temperature: float, smoothing: float) -> Callable[..., Tensor]:
    """The LEARN loss ``name``: conditioning weight ν (FL, GC), LSE smoothing (FL), kernel temperature τ (LogDet)."""
    if name == "fl_cmi":
        return partial(fl_cmi_loss, nu=nu, smoothing=smoothing)
    if name == "gc_cmi":
        return partial(gc_cmi_loss, nu=nu)
    if name == "logdet_cmi":
        return partial(logdet_cmi_loss, temperature=temperature)
    raise ValueError(f"unknown SHaSaM loss {name!r}; choose one of {', '.join(LEARN_LOSSES)}")


def learn_on_mined(
    emb: Tensor, memory: tuple[Tensor, Tensor, Tensor] | None, mined: MinedSets, learn: Callable[..., Tensor]
) -> Tensor:
    """LEARN on the sets MINE picked: A_i = mined positives, P_i = mined negatives, Q_i = anchor i.

    Mined indices point into the bank ``[emb; memory]``; gradients flow into
    the batch embeddings (anchors, and positives/negatives from the batch),
    not into the memory.
    """
    bank = emb if memory is None else torch.cat([emb, memory[0].to(emb)])
    return learn(
        emb, bank[mined.pos_idx.clamp_min(0)], bank[mined.neg_idx.clamp_min(0)], mined.pos_mask, mined.neg_mask
    )


class FeatureMemory:
    """FIFO memory of the detached (embedding, target, group) triples of the last ``size`` samples."""

    def __init__(self, size: int):
        self.size = size
        self.items: tuple[Tensor, Tensor, Tensor] | None = None

    def push(self, emb: Tensor, y: Tensor, a: Tensor) -> None:
        if self.size <= 0:
            return
        new = (emb.detach(), y, a)
        if self.items is not None:
            new = tuple(torch.cat([old, cur]) for old, cur in zip(self.items, new))
        self.items = tuple(t[-self.size :] for t in new)


class SHaSaM(Method):
    name = "shasam"
    description = (
        "Submodular hard-sample mining (hard positives across sensitive groups, hard negatives within) "
        "+ a conditional-mutual-information loss, jointly with cross-entropy"
    )
    citation = (
        "Majee & Iyer, SHaSaM: Submodular Hard Sample Mining for Fair Facial Attribute Recognition, "
        "arXiv 2602.05162, 2026"
    )
    labels = LabelUse(target="train", sensitive="train")
    space = {
        "loss": Hparam("fl_cmi", choice(list(LEARN_LOSSES)), "LEARN loss: facility-location, graph-cut or log-det CMI"),
        "mine_function": Hparam("facility_location", choice(list(FUNCTIONS)), "submodular function of MINE"),
        "n_pos": Hparam(4, choice([2, 4, 8]), "hard positives mined per anchor"),
        "n_neg": Hparam(4, choice([2, 4, 8]), "hard negatives mined per anchor"),
        "diversity": Hparam(1.0, uniform(0.0, 2.0), "weight β of the submodular diversity term in MINE"),
        "cmi_weight": Hparam(1.0, log_uniform(0.1, 3.0), "weight of the CMI loss next to cross-entropy"),
        "nu": Hparam(0.5, uniform(0.25, 1.0), "weight ν of the conditioning (sensitive) set in FL/GC-CMI"),
        "smoothing": Hparam(0.05, choice([0.0, 0.05, 0.1]), "log-sum-exp temperature replacing FL-CMI's max/min/hinge"),
        "temperature": Hparam(0.5, log_uniform(0.1, 1.0), "kernel temperature of LogDet-CMI"),
        "memory_size": Hparam(
            0, choice([0, 128, 256]), "FIFO feature memory added to the mining bank (0 = batch only)"
        ),
    }

    def fit(self, ctx):
        hp = ctx.hparams
        model = ctx.new_classifier()
        model.heads["projection"] = projection_head(model.heads["target"].in_features).to(ctx.device)
        learn = cmi_loss(hp["loss"], hp["nu"], hp["temperature"], hp["smoothing"])
        memory = FeatureMemory(hp["memory_size"])
        records: list[tuple[float, float, float, float, float]] = []

        def loss(m, b):
            feats = m.features(b.x)
            emb = m.heads["projection"](feats)
            start = time.perf_counter()
            mined = mine_hard_samples(
                emb, b.y, b.a, hp["n_pos"], hp["n_neg"], hp["mine_function"], memory.items, diversity=hp["diversity"]
            )
            seconds = time.perf_counter() - start
            cmi = learn_on_mined(emb, memory.items, mined, learn)
            records.append(mining_record(mined, seconds, cmi))
            memory.push(emb, b.y, b.a)
            return cross_entropy(m.heads["target"](feats), b).mean() + hp["cmi_weight"] * cmi

        ctx.train_classifier(model, ctx.meter.remaining, loss, stage="mine+learn", mix=False)
        ctx.log.stage("mine", **summarise_mining(records))
        return Predictor(model, ctx.device)


def mining_record(mined: MinedSets, seconds: float, cmi: Tensor) -> tuple[float, float, float, float, float]:
    """(positives per anchor, negatives per anchor, share of anchors with a positive, MINE ms, CMI loss)."""
    return (
        float(mined.pos_mask.sum(1).float().mean()),
        float(mined.neg_mask.sum(1).float().mean()),
        float(mined.pos_mask.any(1).float().mean()),
        seconds * 1e3,
        float(cmi.detach()),
    )


def summarise_mining(records: list[tuple[float, ...]]) -> dict[str, float]:
    """Means over the steps of the numbers of :func:`mining_record`, plus first and last CMI loss."""
    r = np.asarray(records)
    return {
        "positives_per_anchor": round(float(r[:, 0].mean()), 3),
        "negatives_per_anchor": round(float(r[:, 1].mean()), 3),
        "anchors_with_positives": round(float(r[:, 2].mean()), 3),
        "mine_ms_per_step": round(float(r[:, 3].mean()), 2),
        "cmi_loss_first": round(float(r[0, 4]), 4),
        "cmi_loss_last": round(float(r[-1, 4]), 4),
    }


@hookimpl
def fairfacebench_methods():
    return [SHaSaM]
