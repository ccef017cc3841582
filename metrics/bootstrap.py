"""Uncertainty for the metrics: within-run bootstrap intervals and across-seed summaries.

A row-level bootstrap (draw n test rows with replacement) only changes how many
rows fall in each (group, y, ŷ) cell, and those cell counts are exactly
Multinomial(n, counts / n). Every metric is a function of the counts, so all
resamples are drawn at once as a (B, G·C·C) multinomial and evaluated in one
batched ``metrics_from_counts`` call.
"""

from __future__ import annotations

import math

import numpy as np

from fairfacebench.metrics.fairness import METRIC_NAMES, confusion_counts, metrics_from_counts
from fairfacebench.plain import nan_to_none


def bootstrap_intervals(
    y_true,
    y_pred,
    groups,
    n_groups: int,
    n_classes: int = 2,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """Percentile bootstrap intervals over test rows for every metric in METRIC_NAMES.

    Returns ``{"method", "level", "n_resamples", "intervals": {metric: [lo, hi]},
    "nan_resamples": {metric: count}}``. A resample can leave a group (or cell)
    empty and make a metric undefined; percentiles are taken over the resamples
    where it is defined, ``nan_resamples`` says how many were not, and a bound
    is None when no resample defines the metric.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95; got {level}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer; got {n_resamples}")
    counts = confusion_counts(y_true, y_pred, groups, n_groups, n_classes)
    values = metrics_from_counts(_multinomial_resamples(counts, n_resamples, seed))
    tail = 100 * (1 - level) / 2
    return {
        "method": (
            "percentile bootstrap over test rows, via multinomial resampling of per-(group,y,yhat) "
            f"confusion counts, {n_resamples} resamples, seed {seed}"
        ),
        "level": level,
        "n_resamples": n_resamples,
        "intervals": {name: _percentile_interval(values[name], tail) for name in METRIC_NAMES},
        "nan_resamples": {name: int(np.isnan(values[name]).sum()) for name in METRIC_NAMES},
    }


def seed_summary(values) -> dict:
    """Across-seed mean, std (ddof=1) and Student-t 95% interval mean ± t_{0.975, n−1}·std/√n.

    Undefined entries (std and ci95 for fewer than two seeds) are None.
    """
    x = np.asarray(values, dtype=float).ravel()
    n = x.size
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n >= 2 else math.nan
    from scipy import stats  # imported here: scipy.stats adds 0.7 s to every worker's start

    half_width = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n) if n >= 2 else math.nan
    return nan_to_none(
        {
            "mean": mean,
            "std": std,
            "n": n,
            "ci95": [mean - half_width, mean + half_width],
            "method": "mean ± Student-t 95% interval over seeds: t_{0.975, n-1} · std / sqrt(n), std with ddof=1",
        }
    )


def _multinomial_resamples(counts: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """(B, G, C, C) confusion counts of B row-level bootstrap resamples, drawn as one multinomial."""
    n = int(counts.sum())
    if n == 0:
        raise ValueError("cannot bootstrap an empty test set (0 rows)")
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, counts.ravel() / n, size=n_resamples)
    return draws.reshape(n_resamples, *counts.shape)


def _percentile_interval(values: np.ndarray, tail: float) -> list:
    """[lo, hi] percentiles of the defined (non-NaN) resamples; None bounds if none is defined."""
    defined = values[~np.isnan(values)]
    if defined.size == 0:
        return [None, None]
    low, high = np.percentile(defined, [tail, 100 - tail])
    return [float(low), float(high)]
