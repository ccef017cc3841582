"""Model-selection rules: each picks one trial per (dataset, task, method, seed) from validation metrics only.

Built-in rules register through the `fairfacebench_selection_rules` hook like
third-party ones; `val_acc@val_eod_max<=EPS` is a family parsed from its name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from fairfacebench.errors import UnknownName
from fairfacebench.hookspecs import hookimpl
from fairfacebench.plugins import registry

CONSTRAINED_PREFIX = "val_acc@val_eod_max<="


@dataclass(frozen=True)
class SelectionRule:
    """A named rule: `key(record)` is a sortable score of a run from its validation metrics, higher is better."""

    name: str
    description: str
    key: Callable[[dict], tuple]


def val(record: dict, metric: str) -> float:
    """A validation metric of a run record (NaN when undefined)."""
    v = record["metrics"]["val"].get(metric)
    return math.nan if v is None else float(v)


def higher(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def constrained_rule(eps: float) -> SelectionRule:
    """Highest val_acc among trials with val_eod_max <= eps; if none qualifies, the lowest val_eod_max."""

    def key(r: dict) -> tuple:
        eod = val(r, "eod_max")
        feasible = not math.isnan(eod) and eod <= eps
        return (1, higher(val(r, "acc"))) if feasible else (0, -eod if not math.isnan(eod) else -math.inf)

    return SelectionRule(
        f"{CONSTRAINED_PREFIX}{eps:g}",
        f"highest validation accuracy among trials with validation eod_max <= {eps:g} "
        "(else the lowest validation eod_max)",
        key,
    )


BUILT_IN = [
    SelectionRule("val_acc", "highest validation accuracy", lambda r: (higher(val(r, "acc")),)),
    SelectionRule("val_wga", "highest validation worst-group accuracy", lambda r: (higher(val(r, "wga")),)),
]


@hookimpl
def fairfacebench_selection_rules():
    return BUILT_IN


def get_rule(name: str) -> SelectionRule:
    """An installed rule by name, or a member of the `val_acc@val_eod_max<=EPS` family."""
    rules = registry().selection_rules
    if name in rules:
        return rules[name]
    if name.startswith(CONSTRAINED_PREFIX):
        try:
            return constrained_rule(float(name[len(CONSTRAINED_PREFIX) :]))
        except ValueError:
            pass
    raise UnknownName(
        f"unknown selection rule '{name}'; use one of {sorted(rules)} or '{CONSTRAINED_PREFIX}EPS' "
        f"(e.g. {CONSTRAINED_PREFIX}0.1)"
    )


def select(records: list[dict], rule: SelectionRule) -> dict | None:
    """The best finished trial under `rule`, looking at validation metrics only; ties go to the lowest trial."""
    ok = [r for r in records if r["status"] == "ok"]
    if not ok:
        return None
    return max(ok, key=lambda r: (*rule.key(r), -r["spec"]["trial"]))
