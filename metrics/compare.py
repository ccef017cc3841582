"""Comparing methods over seeds: paired differences against a reference, mean ranks and the critical difference.

Pure functions of per-seed numbers.  Paired differences use the seeds both methods ran (the same data split,
initialisation seed and budget), so seed-to-seed variation that both share cancels.  Ranks follow Demšar
(JMLR 2006): each block (here a metric on one seed) ranks the methods, ties share the mean rank, and the
Nemenyi critical difference says how far apart two mean ranks must be to differ at α = 0.05.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from fairfacebench.plain import nan_to_none

# Studentized range q_{0.05, k, ∞} / √2 for k = 2..20 methods (Demšar 2006, Table 5a, extended to k = 20).
NEMENYI_Q05 = {
    2: 1.960,
    3: 2.343,
    4: 2.569,
    5: 2.728,
    6: 2.850,
    7: 2.949,
    8: 3.031,
    9: 3.102,
    10: 3.164,
    11: 3.219,
    12: 3.268,
    13: 3.313,
    14: 3.354,
    15: 3.391,
    16: 3.426,
    17: 3.458,
    18: 3.489,
    19: 3.517,
    20: 3.544,
}


def t_interval(values: Sequence[float]) -> dict:
    """Mean, std (ddof=1) and 95% Student-t interval of the mean; None where fewer than two values define them."""
    from scipy import stats  # scipy.stats adds most of a second to every worker's start: load on use

    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = x.size
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n >= 2 else math.nan
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n) if n >= 2 else math.nan
    return nan_to_none({"mean": mean, "std": std, "n": n, "ci95": [mean - half, mean + half]})


def paired_difference(method: dict[int, float], reference: dict[int, float]) -> dict:
    """method − reference over the seeds both have: mean, std and 95% t-interval of the paired differences."""
    seeds = sorted(s for s in set(method) & set(reference) if method[s] is not None and reference[s] is not None)
    out = t_interval([method[s] - reference[s] for s in seeds])
    return {**out, "seeds": seeds}


def block_ranks(scores: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Rank (1 = best) of each method in one block; ties get the mean of the ranks they span; NaN ranks last."""
    x = np.where(np.isnan(scores), -np.inf if higher_is_better else np.inf, scores)
    key = -x if higher_is_better else x
    order = np.argsort(key, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for value in np.unique(key):
        tied = key == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def mean_ranks(blocks: list[tuple[np.ndarray, bool]]) -> np.ndarray:
    """Mean rank of each method over blocks of (scores of every method, higher_is_better)."""
    return np.mean([block_ranks(scores, higher) for scores, higher in blocks], axis=0)


def critical_difference(k: int, n_blocks: int) -> float:
    """Nemenyi critical difference at α = 0.05 for k methods ranked over n_blocks blocks (Demšar 2006, Sec. 3.2.2)."""
    if k < 2 or n_blocks < 1:
        return math.nan
    q = NEMENYI_Q05.get(k)
    if q is None:
        raise ValueError(f"critical difference tabulated for 2-20 methods, got {k}")
    return q * math.sqrt(k * (k + 1) / (6.0 * n_blocks))


def clip_interval(interval: Sequence[float | None] | None, low: float = 0.0, high: float = 1.0) -> list | None:
    """An interval of a bounded metric clipped to its range (a t-interval can overshoot [0, 1])."""
    if not interval:
        return None
    return [None if v is None else min(max(v, low), high) for v in interval]
