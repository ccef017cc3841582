"""How a method's stages worked over its selected runs: the harness's diagnostics of each run
(`fairfacebench.diagnostics`: AMI of inferred groups, pseudo-label accuracy per true group, learned weights of right
and wrong pseudo-labels, ...), judged against truth the method never saw, as mean and range over seeds.

Descriptive, not compared: a diagnostic is a property of one run's mechanism, so the summary is the mean and the
smallest and largest value over seeds (no interval, no test)."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np

from fairfacebench.leaderboard.model import MechanismSummary

if TYPE_CHECKING:
    from fairfacebench.record import RunRecord

# an inferred part's number is arbitrary in each run, so its make-up is read per run, never averaged over seeds
PER_RUN_ONLY = ("true_groups_per_part",)


def numeric_leaves(report: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a nested report under dotted names (`accuracy_all_per_group.White`); text, None and booleans
    are left out, and so are the parts of `PER_RUN_ONLY`."""
    leaves: dict[str, float] = {}
    for key, value in report.items():
        name = f"{prefix}{key}"
        if key in PER_RUN_ONLY:
            continue
        if isinstance(value, dict):
            leaves.update(numeric_leaves(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
            leaves[name] = float(value)
    return leaves


def mechanisms(ok: list[RunRecord]) -> list[MechanismSummary] | None:
    """Each (stage, quantity) any selected run's diagnostics report, over the seeds that report it, in the order the
    first run reports them; None when no run has diagnostics."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for record in ok:
        for stage, report in (record.diagnostics or {}).items():
            for quantity, value in numeric_leaves(report).items():
                values[(stage, quantity)].append(value)
    if not values:
        return None
    return [
        MechanismSummary(stage, quantity, float(np.mean(v)), min(v), max(v), len(v))
        for (stage, quantity), v in values.items()
    ]
