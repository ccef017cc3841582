"""Comparing methods over seeds: paired differences against a reference, mean ranks and the critical difference.

Pure functions of per-seed numbers.  Paired differences use the seeds both methods ran (the same data split,
initialisation seed and budget), so seed-to-seed variation that both share cancels.  Ranks follow Demšar
(JMLR 2006): each block (here a metric on one seed) ranks the methods, ties share the mean rank, and the
Nemenyi critical difference says how far apart two mean ranks must be to differ at α = 0.05.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from fairfacebench.plain import nan_to_none

# Metrics where a larger value is better; every other metric of METRIC_NAMES is a gap or a spread (smaller is better).
HIGHER_IS_BETTER = frozenset({"acc", "bal_acc", "wga"})

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


def minimum_detectable_difference(
    seed_sd: float, seeds: int, test_sd: float = 0.0, alpha: float = 0.05, power: float = 0.8
) -> float:
    """The smallest true mean difference a two-sided paired comparison at level `alpha` detects with probability
    `power` over `seeds` paired seeds: (t_{1−α/2, n−1} + t_{power, n−1}) · SE, SE = √(seed_sd²/n + test_sd²).

    seed_sd: std over seeds of the per-seed difference (training randomness, averages out over seeds); test_sd: std
    of the difference from sampling the one shared test set (does not average out over seeds, since every seed
    is scored on the same rows).  The usual sample-size approximation to the noncentral t; with test_sd 0 it is the
    paired t-test's.
    """
    from scipy import stats  # load on use, as t_interval does

    if seeds < 2:
        raise ValueError(f"a difference over seeds needs at least 2 seeds, got {seeds}")
    df = seeds - 1
    se = math.sqrt(seed_sd**2 / seeds + test_sd**2)
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * se)


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


def holm(p_values: Sequence[float] | Mapping[str, float], alpha: float = 0.05) -> dict:
    """Holm's step-down correction (Holm, Scand. J. Statist. 1979) of a family of m p-values.

    Sorted p₍₁₎ ≤ … ≤ p₍ₘ₎: adjusted p₍ᵢ₎ = max_{j ≤ i} min(1, (m − j + 1)·p₍ⱼ₎); hypothesis (i) is rejected
    when its adjusted p-value is ≤ alpha (the same as stepping down until p₍ᵢ₎ > alpha / (m − i + 1)). Returns
    {"adjusted", "reject"} in the input's order (lists, or dicts for a mapping input). Ties keep input order.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), e.g. 0.05; got {alpha}")
    keys = list(p_values) if isinstance(p_values, Mapping) else None
    p = np.asarray([p_values[k] for k in keys] if keys is not None else list(p_values), dtype=float)
    bad = np.flatnonzero(np.isnan(p) | (p < 0) | (p > 1))
    if bad.size:
        where = keys[bad[0]] if keys is not None else int(bad[0])
        raise ValueError(f"p-value {where!r} is {p[bad[0]]}: every p-value must be in [0, 1] (drop untested ones)")
    order = np.argsort(p, kind="stable")
    m = p.size
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)
    reject = adjusted <= alpha
    if keys is not None:
        return {
            "adjusted": {k: float(v) for k, v in zip(keys, adjusted)},
            "reject": {k: bool(r) for k, r in zip(keys, reject)},
        }
    return {"adjusted": adjusted.tolist(), "reject": reject.tolist()}


def metric_ranks(per_seed: Mapping[str, Mapping[int, float | None]], higher_is_better: bool) -> dict:
    """Mean rank of each method on one metric over the seeds every method ran (Demšar 2006, one block per seed).

    ``per_seed[method][seed]`` = the metric's value. Ties share the mean rank; NaN ranks last. Returns
    {"ranks": {method: mean rank}, "seeds": [...], "critical_difference"} (Nemenyi, α = 0.05; None if undefined).
    """
    methods = list(per_seed)
    seeds = sorted(set.intersection(*[{s for s, v in per_seed[m].items() if v is not None} for m in methods]))
    if not methods or not seeds:
        return {"ranks": {m: None for m in methods}, "seeds": seeds, "critical_difference": None}
    blocks = [(np.array([per_seed[m][s] for m in methods], dtype=float), higher_is_better) for s in seeds]
    ranks = mean_ranks(blocks)
    cd = critical_difference(len(methods), len(seeds)) if 2 <= len(methods) <= 20 else math.nan
    return nan_to_none({"ranks": dict(zip(methods, map(float, ranks))), "seeds": seeds, "critical_difference": cd})


def ranks_per_metric(
    per_seed: Mapping[str, Mapping[str, Mapping[int, float | None]]], metrics: Sequence[str]
) -> dict[str, dict]:
    """``metric_ranks`` for each metric separately: ``per_seed[method][metric][seed]`` (a leaderboard row's per_seed).

    Accuracy and the gaps are ranked apart: a mean rank over both would count correlated gaps several times.
    """
    return {
        m: metric_ranks({method: values[m] for method, values in per_seed.items()}, m in HIGHER_IS_BETTER)
        for m in metrics
    }


def best_of(means: Mapping[str, float | None], higher_is_better: bool) -> str:
    """The method with the best mean (first in input order among equals; undefined means never win)."""
    defined = {m: v for m, v in means.items() if v is not None and not math.isnan(v)}
    if not defined:
        raise ValueError(f"no method has a defined mean: {dict(means)}")
    pick = max if higher_is_better else min
    return pick(defined, key=defined.__getitem__)


def tied_with_best(best: str, p_values: Mapping[str, float], alpha: float = 0.05) -> dict:
    """Which methods are tied with ``best``: their paired difference to it is not significant after Holm.

    ``p_values[method]`` = two-sided p-value of method − best being 0 (e.g. ``crossed_paired_difference``).
    A method is tied when Holm over the family of these p-values does not reject; by the p-value's duality with
    the percentile interval, its paired interval at Holm's level for it contains 0.
    """
    others = {m: p for m, p in p_values.items() if m != best}
    corrected = holm(others, alpha) if others else {"adjusted": {}, "reject": {}}
    return {
        "best": best,
        "tied": [best] + [m for m in others if not corrected["reject"][m]],
        "worse": [m for m in others if corrected["reject"][m]],
        "adjusted_p": corrected["adjusted"],
        "alpha": alpha,
        "rule": "tied with the best unless Holm's step-down over the paired tests against it rejects at alpha",
    }


def order_by_mean(means: Mapping[str, float | None], higher_is_better: bool = True) -> list[str]:
    """The methods with a defined mean, best first (equal means keep input order)."""
    defined = [(m, v) for m, v in means.items() if v is not None and not math.isnan(v)]
    return [m for m, _ in sorted(defined, key=lambda item: -item[1] if higher_is_better else item[1])]


def kendall_tau(order_a: Sequence[str], order_b: Sequence[str]) -> float | None:
    """Kendall's τ between two strict orders of the same items (Kendall 1938): (concordant − discordant pairs) over
    all n(n−1)/2 pairs; 1 = the same order, −1 = reversed; None for fewer than two items."""
    if sorted(order_a) != sorted(order_b) or len(set(order_a)) != len(order_a):
        raise ValueError(f"two orders of the same distinct items are needed; got {list(order_a)} and {list(order_b)}")
    n = len(order_a)
    if n < 2:
        return None
    position = {m: i for i, m in enumerate(order_b)}
    b = [position[m] for m in order_a]
    signs = [1 if b[i] < b[j] else -1 for i in range(n) for j in range(i + 1, n)]
    return sum(signs) / (n * (n - 1) / 2)
