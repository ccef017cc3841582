"""Bootstrap across seeds and test rows, for runs that all predict one shared test set: the crossed design.

A method's score over seeds varies with the seed (initialisation, data order) and with the finite test set.
On a board the two are *crossed*, not nested: every seed predicts the same test rows, so the test set's sampling
error is shared by all seeds and does not average out over them.  A nested (two-level) bootstrap, which draws
seeds and then an independent row resample for each drawn seed, treats the rows as if each seed had a test set of
its own and so shrinks the test-set part of the variance by up to the number of seeds.  Here one replicate draws S
seeds with replacement and, independently, one resample of the n test rows that every drawn seed is scored on:
the pigeonhole bootstrap for crossed random effects (Owen, Ann. Appl. Stat. 2007; McCullagh, Bernoulli 2000, on
why no bootstrap of one factor alone is right for a crossed design).  Comparing two methods, both get the same
seeds and the same rows.  A resample of rows is a multinomial weight per row, so every drawn seed's confusion
counts are that weight summed over the rows of each (g, y, ŷ) cell.
"""

from __future__ import annotations

import functools
import math
from typing import Mapping, Sequence

import numpy as np

from fairfacebench.metrics.fairness import METRIC_NAMES, _as_codes, metrics_from_counts
from fairfacebench.plain import nan_to_none

BLOCK = 100  # replicates whose row weights are held in memory at once (B x n floats)
RANGE = (0.0, 1.0)  # every metric of METRIC_NAMES is a rate, a gap between rates or a spread of rates
DIFFERENCE_RANGE = (-1.0, 1.0)


def seed_predictions(stored: Sequence[Mapping], n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, groups, predictions (S, n)) of one method's stored runs (``predictions.npz``: test_scores, test_y,
    test_a, test_ids), refused unless every seed scored the same test rows in the same order."""
    if not stored:
        raise ValueError("no seeds: pass one stored run per seed")
    first = stored[0]
    for other in stored[1:]:
        for key in ("test_ids", "test_y", "test_a"):
            if not np.array_equal(np.asarray(first[key]), np.asarray(other[key])):
                raise ValueError(
                    f"the runs' {key} differ: seeds are compared on one shared test set (same dataset, task and "
                    "split, the same rows in the same order); compare runs of one comparison"
                )
    predictions = np.stack([np.asarray(s["test_scores"]).argmax(1) for s in stored])
    y = _as_codes(first["test_y"], "test_y", n_classes, "n_classes")
    return y, np.asarray(first["test_a"], dtype=np.int64), predictions


@functools.lru_cache(maxsize=4)
def crossed_draws(n_seeds: int, n_rows: int, n_resamples: int, seed: int = 0, resample_rows: bool = True):
    """Seed indices (B, S) drawn with replacement and, independently, row weights (B, n): each replicate's
    multinomial count of every test row, shared by all the seeds it draws (all ones with ``resample_rows=False``,
    the test set held fixed).

    Memoised, read-only arrays: the draws are a function of the arguments (one seeded generator), and a board draws
    the same ones for every row and pair of a comparison (the multinomial was over a third of its build time)."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n_seeds, size=(n_resamples, n_seeds))
    if not resample_rows:
        weights = np.ones((n_resamples, n_rows))
    else:
        weights = rng.multinomial(n_rows, np.full(n_rows, 1 / n_rows), size=n_resamples).astype(float)
    index.flags.writeable = weights.flags.writeable = False
    return index, weights


def weighted_counts(cells: np.ndarray, weights: np.ndarray, n_cells: int) -> np.ndarray:
    """(B, S, K) counts: for each replicate b and seed s, the row weights summed per cell of ``cells[s]`` (S, n).

    Seeds mostly agree on a row's cell, so each row gets a base cell (the one most of its seeds put it in) and the
    base counts are summed once; a seed's counts are the base counts with the weights of the rows it puts elsewhere
    moved out of their base cell and into the seed's.  The weights are whole numbers (multinomial draws), so every
    sum is exact and the counts are those of one sum per seed, to the bit."""
    n_seeds, n_rows = cells.shape
    n_replicates = len(weights)
    votes = np.zeros((n_rows, n_cells), dtype=np.int64)
    for row_cells in cells:
        votes[np.arange(n_rows), row_cells] += 1
    base = votes.argmax(axis=1)
    offsets = (np.arange(n_replicates) * n_cells)[:, None]
    size = n_replicates * n_cells
    common = np.bincount((offsets + base[None]).ravel(), weights.ravel(), minlength=size)
    out = np.empty((n_replicates, n_seeds, n_cells))
    for s, row_cells in enumerate(cells):
        moved = np.flatnonzero(row_cells != base)
        into, out_of = offsets + row_cells[moved][None], offsets + base[moved][None]
        w = weights[:, moved].ravel()
        change = np.bincount(np.concatenate([into.ravel(), out_of.ravel()]), np.concatenate([w, -w]), minlength=size)
        out[:, s] = (common + change).reshape(n_replicates, n_cells)
    return out


def crossed_replicates(
    y: np.ndarray,
    groups: np.ndarray,
    predictions: Sequence[np.ndarray],
    n_groups: int,
    n_classes: int,
    index: np.ndarray,
    weights: np.ndarray,
) -> dict[str, np.ndarray]:
    """Each replicate's mean over its drawn seeds of every metric; with two methods' predictions (S, n) each, of
    metric(A) − metric(B) (metrics undefined in a drawn seed are left out of that replicate's mean)."""
    cells = np.asarray(groups)[None] * n_classes + np.asarray(y)[None]
    for p in predictions:
        cells = cells * n_classes + np.asarray(p)
    shape = (n_groups, n_classes) + (n_classes,) * len(predictions)
    out: dict[str, list[np.ndarray]] = {name: [] for name in METRIC_NAMES}
    for start in range(0, len(index), BLOCK):
        block, rows = index[start : start + BLOCK], weights[start : start + BLOCK]
        counts = weighted_counts(cells, rows, int(np.prod(shape)))
        drawn = np.round(counts[np.arange(len(block))[:, None], block]).astype(np.int64)  # (b, S, K)
        flat = drawn.reshape(-1, *shape)
        if len(predictions) == 1:
            values = metrics_from_counts(flat)
        else:
            first, second = metrics_from_counts(flat.sum(axis=-1)), metrics_from_counts(flat.sum(axis=-2))
            values = {name: first[name] - second[name] for name in METRIC_NAMES}
        for name in METRIC_NAMES:
            out[name].append(_defined_mean(np.asarray(values[name]).reshape(drawn.shape[:2])))
    return {name: np.concatenate(parts) for name, parts in out.items()}


def crossed_mean(
    y,
    groups,
    predictions,
    n_groups: int,
    n_classes: int = 2,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    resample_rows: bool = True,
) -> dict:
    """Mean over seeds of every metric of one method's predictions (S, n) on a shared test set, with the crossed
    bootstrap's percentile interval corrected for few seeds (`seed_corrected_interval`).  Estimate = the mean of
    the per-seed metrics over the seeds defining it."""
    predictions = [np.atleast_2d(predictions)]
    replicates = _resampled(y, groups, predictions, n_groups, n_classes, n_resamples, seed, resample_rows)
    per_seed = _per_seed(y, groups, predictions, n_groups, n_classes)
    estimates = _estimates(per_seed)
    metrics = {
        name: {
            "mean": estimates[name],
            **seed_corrected_interval(replicates[name], estimates[name], per_seed[name], level, RANGE),
        }
        for name in METRIC_NAMES
    }
    method = _method(n_resamples, seed, resample_rows)
    return nan_to_none({"method": method, "level": level, "seeds": len(predictions[0]), "metrics": metrics})


def crossed_paired_difference(
    y,
    groups,
    pred_a,
    pred_b,
    n_groups: int,
    n_classes: int = 2,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    resample_rows: bool = True,
) -> dict:
    """Paired difference A − B of every metric's mean over the seeds both ran, with interval and two-sided p-value.

    ``pred_a``, ``pred_b``: (S, n) predictions of the two methods, row s of both from the same seed, every row on
    the same test rows ``y``, ``groups``.  Estimate = the mean over seeds of metric(A) − metric(B) where both are
    defined; interval and p-value corrected for few seeds (`seed_corrected_interval`, `seed_corrected_p_value`).
    """
    pred_a, pred_b = np.atleast_2d(pred_a), np.atleast_2d(pred_b)
    if pred_a.shape != pred_b.shape or pred_a.shape[1] != len(y):
        raise ValueError(
            f"pred_a and pred_b must both be (seeds, rows) on the {len(y)} test rows; got {pred_a.shape} and "
            f"{pred_b.shape}"
        )
    replicates = _resampled(y, groups, [pred_a, pred_b], n_groups, n_classes, n_resamples, seed, resample_rows)
    per_seed = _per_seed(y, groups, [pred_a, pred_b], n_groups, n_classes)
    difference = _estimates(per_seed)
    mean_a = _estimates(_per_seed(y, groups, [pred_a], n_groups, n_classes))
    mean_b = _estimates(_per_seed(y, groups, [pred_b], n_groups, n_classes))
    metrics = {}
    for name in METRIC_NAMES:
        estimate = difference[name]
        metrics[name] = {
            "mean_a": mean_a[name],
            "mean_b": mean_b[name],
            "difference": estimate,
            **seed_corrected_interval(replicates[name], estimate, per_seed[name], level, DIFFERENCE_RANGE),
            "p_value": seed_corrected_p_value(replicates[name], estimate, per_seed[name], 0.0, DIFFERENCE_RANGE),
        }
    return nan_to_none(
        {"method": _method(n_resamples, seed, resample_rows), "level": level, "seeds": len(pred_a), "metrics": metrics}
    )


def percentile_interval(replicates, estimate: float, level: float = 0.95) -> dict:
    """Percentile interval of the defined replicates, widened to hold ``estimate``, and the replicates' bias.

    Returns {"interval": [lo, hi], "widened_to_estimate": bool, "bootstrap_bias": mean(θ*) − θ̂}. A gap
    metric's row resamples sit above its estimate (docs/METRICS.md): a bias comparable to the interval's
    width says the interval is shifted by it.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95; got {level}")
    theta = np.asarray(replicates, dtype=float)
    theta = theta[~np.isnan(theta)]
    if theta.size == 0 or math.isnan(estimate):
        return {"interval": [math.nan, math.nan], "widened_to_estimate": False, "bootstrap_bias": math.nan}
    low, high = np.quantile(theta, [(1 - level) / 2, (1 + level) / 2])
    widened = not low <= estimate <= high
    return {
        "interval": [float(min(low, estimate)), float(max(high, estimate))],
        "widened_to_estimate": widened,
        "bootstrap_bias": float(theta.mean() - estimate),
    }


def seed_correction(replicates, per_seed, level: float = 0.95) -> dict:
    """How much wider than the crossed bootstrap's percentile interval an interval over few seeds must be.

    The bootstrap draws seeds from the S there are, so its seed part has (S − 1)/S of their variance, and its
    quantiles are normal ones where the seed part, estimated from S values, calls for Student t.  With
    v* = var(θ*) the replicates' variance and e_s the per-seed values (metric, or paired difference, of seed s on
    the whole test set; S of them defined):

        v_seeds = var(e, ddof=1) / S                   the seed part, unbiased (S − 1 degrees of freedom)
        v_rows  = max(v* − var(e, ddof=0) / S, 0)      what the bootstrap adds beyond its own seed part
        v       = v_seeds + v_rows
        df      = v² (S − 1) / v_seeds²                Satterthwaite, the row part counted as known
        scale   = √(v / v*) · t_df((1 + level)/2) / z((1 + level)/2)   (≥ 1)

    Returns {"scale", "df"}: scale 1 and df ∞ with fewer than 2 defined seeds, seeds that agree (v_seeds 0) or
    replicates that do not vary.
    """
    ratio, df = _variance_parts(_defined(replicates), per_seed)
    return {"scale": _scale(ratio, df, level), "df": df}


def seed_corrected_interval(
    replicates, estimate: float, per_seed, level: float = 0.95, bounds: tuple[float, float] = (-math.inf, math.inf)
) -> dict:
    """`percentile_interval` with each side's distance from the estimate multiplied by `seed_correction`'s scale
    (the interval keeps its shape, e.g. a gap's skew, and still holds its estimate), clipped to the statistic's
    range ``bounds`` (with two seeds the scale can carry a side past it).

    Returns `percentile_interval`'s keys ("interval" is the corrected one) plus "percentile_interval" (before the
    correction) and "seed_correction" ({"scale", "df"}).
    """
    theta = _defined(replicates)
    ratio, df = _variance_parts(theta, per_seed)
    out = percentile_interval(theta, estimate, level)
    scale = _scale(ratio, df, level)
    low, high = out["interval"]
    return {
        **out,
        "interval": _scaled(out["interval"], estimate, scale, bounds),
        "percentile_interval": [low, high],
        "seed_correction": {"scale": scale, "df": df},
    }


def seed_corrected_p_value(
    replicates, estimate: float, per_seed, null: float = 0.0, bounds: tuple[float, float] = (-math.inf, math.inf)
) -> float:
    """Two-sided p-value of the difference being ``null`` that agrees with `seed_corrected_interval`: the α at
    which the interval of level 1 − α first holds ``null`` (bisection over α), never below the Monte Carlo
    resolution 2/(B + 1) of `bootstrap_p_value`.  Without a seed correction (scale 1 at every level) this is
    `bootstrap_p_value` up to its +1s."""
    theta = _defined(replicates)
    if theta.size == 0 or math.isnan(estimate):
        return math.nan
    ratio, df = _variance_parts(theta, per_seed)  # the level-independent part, once
    floor = 2 / (theta.size + 1)

    def holds(alpha: float) -> bool:
        interval = percentile_interval(theta, estimate, 1 - alpha)["interval"]
        low, high = _scaled(interval, estimate, _scale(ratio, df, 1 - alpha), bounds)
        return low <= null <= high

    if holds(1 - 1e-9):  # not even the narrowest interval leaves the null out
        return 1.0
    if not holds(floor):
        return floor
    lo, hi = floor, 1 - 1e-9  # holds(lo), not holds(hi)
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if holds(mid) else (lo, mid)
    return hi


def _defined(values) -> np.ndarray:
    """The non-NaN entries as floats."""
    x = np.asarray(values, dtype=float)
    return x[~np.isnan(x)]


def _variance_parts(theta: np.ndarray, per_seed) -> tuple[float, float]:
    """(v / v*, df) of `seed_correction` for defined replicates ``theta``; (1, ∞) when there is nothing to correct."""
    e = _defined(per_seed)
    n_seeds = e.size
    if n_seeds < 2 or theta.size < 2 or not np.ptp(theta) > 0 or not np.ptp(e) > 0:
        return 1.0, math.inf
    v_boot = float(theta.var())
    v_seeds = float(e.var(ddof=1)) / n_seeds
    v = v_seeds + max(v_boot - float(e.var()) / n_seeds, 0.0)
    return v / v_boot, v**2 * (n_seeds - 1) / v_seeds**2


def _scale(ratio: float, df: float, level: float) -> float:
    """√ratio · t_df / z at the level's two-sided quantile, at least 1 (1 when df is ∞ and the ratio 1)."""
    if math.isinf(df) and ratio == 1.0:
        return 1.0
    # scipy.special's quantiles are what stats.t.ppf and stats.norm.ppf return (bit for bit: they call them), without
    # the distribution objects' argument handling, which made this most of a leaderboard build's p-value bisections;
    # loaded on use, as scipy adds to a worker's start
    from scipy.special import ndtri, stdtrit

    q = (1 + level) / 2
    return max(math.sqrt(ratio) * float(stdtrit(df, q)) / float(ndtri(q)), 1.0)


def _scaled(interval: list[float], estimate: float, scale: float, bounds: tuple[float, float]) -> list[float]:
    """Each side of ``interval`` at ``scale`` times its distance from ``estimate``, clipped to ``bounds``."""
    low, high = interval
    if math.isnan(low):
        return [math.nan, math.nan]
    return [max(estimate - scale * (estimate - low), bounds[0]), min(estimate + scale * (high - estimate), bounds[1])]


def bootstrap_p_value(replicates, null: float = 0.0) -> float:
    """Two-sided bootstrap p-value of the difference being ``null``.

    p = min(1, 2·min(1 + #{Δ* ≤ null}, 1 + #{Δ* ≥ null}) / (B + 1)) over the B defined replicates: up to the +1s,
    the smallest 1 − level whose percentile interval leaves out the null. The +1s are the Monte Carlo p-value
    convention of Davison & Hinkley (1997, ch. 4), so that p is never 0 with finitely many resamples.
    """
    theta = np.asarray(replicates, dtype=float)
    theta = theta[~np.isnan(theta)]
    if theta.size == 0:
        return math.nan
    below, above = np.count_nonzero(theta <= null), np.count_nonzero(theta >= null)
    return min(1.0, 2 * (1 + min(below, above)) / (theta.size + 1))


def _resampled(
    y,
    groups,
    predictions: list[np.ndarray],
    n_groups: int,
    n_classes: int,
    n_resamples: int,
    seed: int,
    resample_rows: bool,
) -> dict[str, np.ndarray]:
    """`crossed_replicates` over `crossed_draws`: every metric's B bootstrap replicates."""
    index, weights = crossed_draws(len(predictions[0]), len(y), n_resamples, seed, resample_rows)
    return crossed_replicates(y, groups, predictions, n_groups, n_classes, index, weights)


def _estimates(per_seed: dict[str, np.ndarray]) -> dict[str, float]:
    """Every metric on the data itself (every seed once, every row once): the mean of its per-seed values over the
    seeds defining it, the estimate the replicates vary around."""
    return {k: float(_defined_mean(v)) for k, v in per_seed.items()}


def _per_seed(y, groups, predictions: list[np.ndarray], n_groups: int, n_classes: int) -> dict[str, np.ndarray]:
    """Every metric of each seed alone on the whole test set (S values; NaN where undefined)."""
    n_seeds = len(predictions[0])
    index, weights = np.arange(n_seeds)[:, None], np.ones((n_seeds, len(y)))
    return crossed_replicates(y, groups, predictions, n_groups, n_classes, index, weights)


def _defined_mean(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the non-NaN entries; NaN where there are none."""
    defined = ~np.isnan(values)
    total = np.where(defined, values, 0.0).sum(axis=-1)
    n = defined.sum(axis=-1)
    return np.divide(total, n, out=np.full(total.shape, np.nan), where=n > 0)


def _method(n_resamples: int, seed: int, resample_rows: bool) -> str:
    rows = "and, independently, one resample of the shared test rows" if resample_rows else "test rows held fixed"
    return (
        f"crossed bootstrap: seeds drawn with replacement {rows}; {n_resamples} resamples, seed {seed}; "
        "percentile interval widened to hold the estimate, each side scaled for few seeds (Satterthwaite t)"
    )
