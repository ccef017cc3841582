"""Compute budgets (optimizer steps at a fixed batch size) and the meter every method draws from."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from fairfacebench.errors import UnknownName


class BudgetExceeded(RuntimeError):
    """A method tried to take more optimizer steps than its budget allows."""


@dataclass(frozen=True)
class Budget:
    """A named budget profile; identical for every method in a comparison.

    amp: mixed precision, applied to every method alike (CUDA only).
    """

    name: str
    steps: int
    batch_size: int
    amp: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


BUDGETS: dict[str, Budget] = {
    # CI: seconds per method on a 2-core CPU; checks that everything runs, not what it learns.
    "smoke": Budget("smoke", steps=12, batch_size=32),
    # The default `fairbench run`: all methods on synthfaces in minutes on a 2-core CPU.
    "default": Budget("default", steps=70, batch_size=64),
    # Minutes per method on a 2-core CPU at 64 px.
    "small": Budget("small", steps=600, batch_size=128),
    # A single GPU: about 20 epochs of FairFace train at 224 px.
    "paper": Budget("paper", steps=15000, batch_size=128, amp=True),
}

# The input resolution each budget is sized for: a data setting, used when a plan leaves `resolution` at 0.
BUDGET_RESOLUTION: dict[str, int] = {"smoke": 32, "default": 48, "small": 64, "paper": 224}


def get_budget(name: str) -> Budget:
    if name not in BUDGETS:
        raise UnknownName(f"unknown budget '{name}'; available: {sorted(BUDGETS)}")
    return BUDGETS[name]


@dataclass
class BudgetMeter:
    """Counts optimizer steps and samples per stage; raises once the total is spent."""

    budget: Budget
    steps: int = 0
    samples: int = 0
    per_stage: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @property
    def remaining(self) -> int:
        return self.budget.steps - self.steps

    def charge(self, batch_size: int, stage: str = "train") -> None:
        """Record one optimizer step; refuse it if the budget is already spent."""
        if self.steps >= self.budget.steps:
            raise BudgetExceeded(
                f"budget '{self.budget.name}' allows {self.budget.steps} optimizer steps in total; "
                f"stage '{stage}' tried to take step {self.steps + 1} (steps so far per stage: {self.per_stage})"
            )
        self.steps += 1
        self.samples += batch_size
        self.per_stage[stage] = self.per_stage.get(stage, 0) + 1

    def report(self) -> dict:
        return {
            "budget": self.budget.to_dict(),
            "steps": self.steps,
            "samples_seen": self.samples,
            "steps_per_stage": dict(self.per_stage),
            "wall_time_s": round(time.perf_counter() - self.started, 3),
        }
