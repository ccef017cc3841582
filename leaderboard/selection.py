"""Model-selection rules: each picks one trial per (dataset, task, method, seed) from validation metrics only.

Built-in rules register through the `fairfacebench_selection_rules` hook like
third-party ones; `val_acc@val_eod_max<=EPS` is a family parsed from its name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from fairfacebench.hookspecs import hookimpl

CONSTRAINED_PREFIX = "val_acc@val_eod_max<="


@dataclass(frozen=True)
class SelectionRule:
    """A named rule: `key(record)` is a sortable score of a run (a `RunRecord`) from its validation metrics, higher is
    better."""

    name: str
    description: str
    key: Callable[[Any], tuple]


def val(record: Any, metric: str) -> float:
    """A validation metric of a run record (`record.RunRecord`; NaN when undefined)."""
    v = record.val_metric(metric)
    return math.nan if v is None else float(v)


def higher(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def constrained_rule(eps: float) -> SelectionRule:
    """Highest val_acc among trials with val_eod_max <= eps; if none qualifies, the lowest val_eod_max."""

    def key(r: Any) -> tuple:
        eod = val(r, "eod_max")
        feasible = not math.isnan(eod) and eod <= eps
        return (1, higher(val(r, "acc"))) if feasible else (0, -eod if not math.isnan(eod) else -math.inf)

    return SelectionRule(
        f"{CONSTRAINED_PREFIX}{eps:g}",
        f"highest validation accuracy among trials with validation eod_max <= {eps:g} "
        "(else the lowest validation eod_max)",
        key,
    )


@dataclass(frozen=True)
class ConstrainedFamily:
    """`val_acc@val_eod_max<=EPS`: the constrained rule for any EPS, parsed from the rule's name."""

    name: str = f"{CONSTRAINED_PREFIX}EPS"
    description: str = "highest validation accuracy among trials with validation eod_max <= EPS"
    example: str = f"{CONSTRAINED_PREFIX}0.1"

    def parse(self, name: str) -> SelectionRule | None:
        if not name.startswith(CONSTRAINED_PREFIX):
            return None
        try:
            return constrained_rule(float(name[len(CONSTRAINED_PREFIX) :]))
        except ValueError:
            return None


BUILT_IN = [
    SelectionRule("val_acc", "highest validation accuracy", lambda r: (higher(val(r, "acc")),)),
    SelectionRule("val_wga", "highest validation worst-group accuracy", lambda r: (higher(val(r, "wga")),)),
    ConstrainedFamily(),
]


@hookimpl
def fairfacebench_selection_rules():
    return BUILT_IN
