"""The method contract (DomainBed-style): metadata, a hyperparameter search space and `fit(ctx) -> Predictor`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from fairfacebench.context import FitContext
from fairfacebench.training import Predictor

Sampler = Callable[[np.random.Generator], Any]


@dataclass(frozen=True)
class Hparam:
    """One hyperparameter: its default (trial 0) and its random-search distribution."""

    default: Any
    sample: Sampler
    doc: str = ""


# The search distributions: a draw is `sampler(rng)`; `str(sampler)` names the distribution (`fairbench list methods
# NAME`).  Any function of a numpy Generator is a sampler too.


@dataclass(frozen=True)
class LogUniform:
    lo: float
    hi: float

    def __call__(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.uniform(math.log(self.lo), math.log(self.hi))))

    def __str__(self) -> str:
        return f"log-uniform [{self.lo:g}, {self.hi:g}]"


@dataclass(frozen=True)
class Uniform:
    lo: float
    hi: float

    def __call__(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.lo, self.hi))

    def __str__(self) -> str:
        return f"uniform [{self.lo:g}, {self.hi:g}]"


@dataclass(frozen=True)
class Choice:
    options: tuple[Any, ...]

    def __call__(self, rng: np.random.Generator) -> Any:
        return self.options[int(rng.integers(len(self.options)))]

    def __str__(self) -> str:
        return "one of " + ", ".join(map(str, self.options))


def log_uniform(lo: float, hi: float) -> Sampler:
    return LogUniform(lo, hi)


def uniform(lo: float, hi: float) -> Sampler:
    return Uniform(lo, hi)


def choice(options: list[Any]) -> Sampler:
    return Choice(tuple(options))


@dataclass(frozen=True)
class LabelUse:
    """Which human labels a method reads, shown on the leaderboard.

    target / sensitive: '' (none), 'train', 'val' or 'train+val', where 'val'
    is the fit part of validation (the selection part is never a method's);
    sensitive_at_inference: the predictor needs each test image's sensitive
    attribute (e.g. group-specific thresholds).
    """

    target: str = "train"
    sensitive: str = ""
    note: str = ""
    sensitive_at_inference: bool = False

    def summary(self) -> str:
        parts = []
        if self.target:
            parts.append(f"y:{self.target}")
        if self.sensitive:
            parts.append(f"a:{self.sensitive}")
        if self.sensitive_at_inference:
            parts.append("a at inference")
        text = ", ".join(parts) or "none"
        return f"{text} ({self.note})" if self.note else text

    def allows(self, touched: str) -> bool:
        """Whether reading `touched` (e.g. 'train.sensitive') is covered by this declaration."""
        split, kind = touched.split(".")
        declared = self.target if kind == "target" else self.sensitive
        return split in declared.split("+")


COMMON_HPARAMS: dict[str, Hparam] = {
    "lr": Hparam(1e-3, log_uniform(3e-4, 3e-3), "peak learning rate of the one-cycle AdamW schedule"),
    "weight_decay": Hparam(1e-4, log_uniform(1e-6, 1e-2), "AdamW weight decay"),
}


class Method:
    """Base class of every method plugin.

    Subclasses set the metadata and `space` (their hyperparameters, merged
    with COMMON_HPARAMS) and implement `fit`, which uses only the context;
    the values of one trial are `ctx.hparams`.
    """

    name: str = ""
    description: str = ""
    citation: str = ""
    labels: LabelUse = LabelUse()
    needs_vlm: bool = False
    needs_pool: bool = False
    transductive: bool = False  # reads the test images (never their labels); shown on the leaderboard
    version: int = 1  # part of every run id: bump when the algorithm changes, so stale results are not reused
    ablation_of: str | None = None  # an ablation names its method; `--methods all` leaves ablations out
    space: dict[str, Hparam] = {}

    @classmethod
    def search_space(cls) -> dict[str, Hparam]:
        return {**COMMON_HPARAMS, **cls.space}

    @classmethod
    def default_hparams(cls) -> dict[str, Any]:
        return {k: h.default for k, h in cls.search_space().items()}

    @classmethod
    def label_use(cls, hparams: dict[str, Any]) -> LabelUse:
        """The labels this configuration reads (override when a hyperparameter changes it)."""
        return cls.labels

    @classmethod
    def requirements(cls) -> str:
        needs = [n for n, on in (("vlm", cls.needs_vlm), ("unlabeled pool", cls.needs_pool)) if on]
        return ", ".join(needs) or "-"

    def fit(self, ctx: FitContext) -> Predictor:
        raise NotImplementedError
