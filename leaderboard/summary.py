"""A metric over the selected run of each seed, as a `MetricSummary`; the mean of defined values."""

from __future__ import annotations

import math

import numpy as np

from fairfacebench.leaderboard.model import MetricSummary, defined
from fairfacebench.metrics.compare import clip_interval, t_interval


def summarise(values: list[float | None], bootstrap: list[list | None]) -> MetricSummary:
    """Across-seed mean, std and 95% t-interval; with one seed, the run's bootstrap interval."""
    defined_values = [v for v in values if defined(v)]
    if not defined_values:
        return MetricSummary(math.nan, math.nan, 0, None)
    if len(defined_values) > 1:
        s = t_interval(defined_values)
        return MetricSummary(s["mean"], s["std"], s["n"], clip_interval(s["ci95"]))
    return MetricSummary(defined_values[0], math.nan, 1, bootstrap[0] if bootstrap else None)


def mean_of(values: list[float | None]) -> float:
    kept = [v for v in values if defined(v)]
    return float(np.mean(kept)) if kept else math.nan
