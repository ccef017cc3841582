"""Compute budgets and the meter every method draws from: optimizer steps and forward samples, per stage.

A budget allows `steps` optimizer steps of `batch_size` images and a number of
forward samples (images through any network the method owns or gets from the
fit context).  The forward-sample limit follows one rule for every method:
`views` forward samples per training image of every step (two-view
contrastive learning fits) plus `inference_passes` passes over every image
set the run lets the method read (training images, the validation part it
may fit on, the unlabeled pool, the test images of a transductive method).
Going past either limit raises `BudgetExceeded` naming the stage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from fairfacebench.errors import UnknownName
from fairfacebench.typed import to_plain


class BudgetExceeded(RuntimeError):
    """A method tried to take more optimizer steps or forward samples than its budget allows."""


@dataclass(frozen=True)
class Budget:
    """A named budget profile; identical for every method in a comparison.

    amp: mixed precision (float16 autocast), applied to every method alike (CUDA only).
    bf16: bfloat16 autocast on CPU, applied to every method alike; only on a CPU that computes bfloat16 natively
    (preflight refuses it elsewhere).  It changes numbers, so it is part of the comparison key; a budget without
    it (None) keeps the run ids it had before the field existed.
    """

    name: str
    steps: int
    batch_size: int
    amp: bool = False
    views: int = 2  # forward samples allowed per training image of a step
    inference_passes: int = 3  # forward passes allowed over each image set the method may read
    bf16: bool | None = None

    OMIT_WHEN_NONE = ("bf16",)

    def forward_limit(self, images_readable: int) -> int:
        """Forward samples a run may spend: views per step image plus inference passes over what it may read."""
        return self.steps * self.batch_size * self.views + self.inference_passes * images_readable

    def to_dict(self) -> dict:
        return to_plain(self)


BUDGETS: dict[str, Budget] = {
    # CI: seconds per method on a 2-core CPU; checks that everything runs, not what it learns.
    "smoke": Budget("smoke", steps=12, batch_size=32),
    # The default `fairbench run`: all methods on synthfaces in minutes on a 2-core CPU.
    "default": Budget("default", steps=70, batch_size=64),
    # Minutes per method on a 2-core CPU at 64 px.
    "small": Budget("small", steps=600, batch_size=128),
    # A single GPU: about 20 epochs of FairFace train at 224 px.
    "paper": Budget("paper", steps=15000, batch_size=128, amp=True),
    # The UTKFace board on a 2-core CPU: ERM's validation accuracy gains under a point from 600 to 1000 steps
    # (scripts/learning_curve.py; README "Results"), and every method x 3 seeds fits in about 3 hours.
    "board-cpu": Budget("board-cpu", steps=600, batch_size=64),
    # Board v2 on a 2-core CPU: 1,200 steps of 64 (7.3 epochs of the 10.6k de-duplicated training images), what
    # every method x both tasks x 5 seeds allows in about 14 hours. Not a plateau: ERM (one seed per point,
    # stores/utkface-v2-learning-curve) gains 0.86 then 0.68 points of validation accuracy on task 1 from 600 to
    # 1,200 to 2,400 steps, and its test eod_max falls 0.190 -> 0.161 from 1,200 to 2,400 (task 2: 0.888 -> 0.820).
    "board-cpu-v2": Budget("board-cpu-v2", steps=1200, batch_size=64),
    # The same board sized for one GPU (ResNet-18 at 128 px): about 48 epochs of the 10.7k training images.
    "board-gpu": Budget("board-gpu", steps=4000, batch_size=128, amp=True),
}

# The input resolution each budget is sized for: a data setting, used when a plan leaves `resolution` at 0.
BUDGET_RESOLUTION: dict[str, int] = {
    "smoke": 32,
    "default": 48,
    "small": 64,
    "paper": 224,
    "board-cpu": 64,
    "board-cpu-v2": 64,
    "board-gpu": 128,
}


def get_budget(name: str) -> Budget:
    if name not in BUDGETS:
        raise UnknownName(f"unknown budget '{name}'; available: {sorted(BUDGETS)}")
    return BUDGETS[name]


@dataclass
class BudgetMeter:
    """Counts optimizer steps, samples, forward samples and wall time per stage; raises once a limit is spent.

    `forward_limit` None leaves forward samples counted but unlimited.  After
    `close()` (the end of `fit`) forwards are the harness's evaluation and
    are no longer charged.
    """

    budget: Budget
    forward_limit: int | None = None
    steps: int = 0
    samples: int = 0
    forward_samples: int = 0
    per_stage: dict[str, int] = field(default_factory=dict)
    forward_per_stage: dict[str, dict[str, int]] = field(default_factory=dict)
    time_per_stage: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    closed: bool = False
    inner_steps: int = 0  # auxiliary optimizer steps taken inside metered steps (`FitContext.inner_step`)
    inside_metered: int = 0  # depth of metered network calls (forwards inside them are already charged)
    # Told of every charge as it happens (kind 'step' or 'forward', count, stage or network): the sealed runner
    # sends these to the harness process, where a method that resets its meter cannot take them back.
    tally: Callable[[str, int, str], None] | None = None
    predicting: bool = False  # after `open_for_prediction`: forwards are counted, optimizer steps refused
    _stages: list[tuple[str, float]] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.budget.steps - self.steps

    @property
    def stage(self) -> str:
        return self._stages[-1][0] if self._stages else "unstaged"

    def enter(self, stage: str) -> None:
        now = time.perf_counter()
        self._account(now)
        self._stages.append((stage, now))

    def leave(self) -> None:
        now = time.perf_counter()
        self._account(now)
        self._stages.pop()
        if self._stages:
            self._stages[-1] = (self._stages[-1][0], now)

    def _account(self, now: float) -> None:
        """Attribute the time since the innermost stage last started to it."""
        if self._stages:
            name, since = self._stages[-1]
            self.time_per_stage[name] = self.time_per_stage.get(name, 0.0) + now - since
            self._stages[-1] = (name, now)

    def charge(self, batch_size: int, stage: str = "train") -> None:
        """Record one optimizer step; refuse it if the budget is already spent or the method is predicting."""
        if self.predicting:
            raise BudgetExceeded(f"stage '{stage}' took an optimizer step while predicting: train only inside fit")
        if self.steps >= self.budget.steps:
            raise BudgetExceeded(
                f"budget '{self.budget.name}' allows {self.budget.steps} optimizer steps in total; "
                f"stage '{stage}' tried to take step {self.steps + 1} (steps so far per stage: {self.per_stage})"
            )
        self.steps += 1
        self.samples += batch_size
        self.per_stage[stage] = self.per_stage.get(stage, 0) + 1
        if self.tally is not None:
            self.tally("step", 1, stage)

    def charge_forward(self, n: int, network: str) -> None:
        """Record `n` images through `network` in the current stage; refuse them past the forward-sample limit."""
        if self.closed or n == 0:
            return
        if self.predicting and self.forward_limit is not None and self.forward_samples + n > self.forward_limit:
            raise BudgetExceeded(
                f"prediction allows {self.budget.inference_passes} forward passes over the images it scores; the "
                f"{network} was asked for {n} more after {self.forward_per_stage.get('predict', {})}: a predictor "
                "may not train or embed anything else"
            )
        if self.forward_limit is not None and self.forward_samples + n > self.forward_limit:
            raise BudgetExceeded(
                f"budget '{self.budget.name}' allows {self.forward_limit} forward samples in total; stage "
                f"'{self.stage}' asked for {n} more through the {network} after {self.forward_samples} "
                f"(per stage: {self.forward_per_stage})"
            )
        self.forward_samples += n
        counts = self.forward_per_stage.setdefault(self.stage, {})
        counts[network] = counts.get(network, 0) + n
        if self.tally is not None:
            self.tally("forward", n, network)

    def close(self) -> None:
        """The end of `fit`: stop charging, attribute the remaining time."""
        while self._stages:
            self.leave()
        self.closed = True

    def open_for_prediction(self, images: int) -> None:
        """After `close`: count the forwards of prediction (at most `inference_passes` over `images`) in a stage
        'predict', and refuse optimizer steps, so a predictor cannot train."""
        self.closed, self.predicting = False, True
        self.forward_limit = self.forward_samples + self.budget.inference_passes * images
        self.enter("predict")

    def report(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.started
        staged = sum(self.time_per_stage.values())
        return {
            "budget": self.budget.to_dict(),
            "steps": self.steps,
            "samples_seen": self.samples,
            "steps_per_stage": dict(self.per_stage),
            "forward_samples": self.forward_samples,
            "forward_limit": self.forward_limit,
            "forward_samples_per_stage": {k: dict(v) for k, v in self.forward_per_stage.items()},
            "wall_time_s": round(wall, 3),
            "wall_time_per_stage_s": {
                **{k: round(v, 3) for k, v in self.time_per_stage.items()},
                **({"unstaged": round(wall - staged, 3)} if wall - staged > 0.0005 else {}),
            },
        }
