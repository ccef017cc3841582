"""Two-level (hierarchical) bootstrap across seeds: resample seeds, then test rows within each drawn seed.

A method's score over seeds varies with the seed (initialisation, data order) and with the finite test set;
a bootstrap of seeds alone ignores the second, a row bootstrap of one run the first. The two-level bootstrap
(Davison & Hinkley 1997, ch. 3, hierarchical data) draws S seeds with replacement from the S seeds run, then
for every drawn seed a row-level resample of its test predictions: as in ``bootstrap.py`` a multinomial draw
of the seed's confusion counts. Comparing two methods, both are drawn together: the same seeds and, since both
predict the same test rows, the same rows, i.e. a multinomial draw of the joint counts[g, y, ŷ_A, ŷ_B].
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from fairfacebench.metrics.bootstrap import _multinomial_resamples
from fairfacebench.metrics.fairness import METRIC_NAMES, _as_codes, confusion_counts, metrics_from_counts
from fairfacebench.plain import nan_to_none


def paired_counts(y_true, y_pred_a, y_pred_b, groups, n_groups: int, n_classes: int = 2) -> np.ndarray:
    """Joint counts[g, y, ŷ_A, ŷ_B] of the test rows two methods both predicted (one seed)."""
    y_pred_b = _as_codes(y_pred_b, "y_pred_b", n_classes, "n_classes")
    if len(y_pred_b) != len(y_pred_a):
        raise ValueError(f"y_pred_a and y_pred_b must predict the same rows; got {len(y_pred_a)} and {len(y_pred_b)}")
    per_a = confusion_counts(y_true, y_pred_a, groups, n_groups, n_classes)  # validates y_true, y_pred_a, groups
    cell = ((np.asarray(groups) * n_classes + np.asarray(y_true)) * n_classes + np.asarray(y_pred_a)) * n_classes
    joint = np.bincount(cell + y_pred_b, minlength=per_a.size * n_classes).reshape(*per_a.shape, n_classes)
    return joint.astype(np.int64, copy=False)


def counts_from_predictions(predictions: Mapping, n_groups: int, n_classes: int) -> np.ndarray:
    """counts[g, y, ŷ] of a stored run's test predictions (``predictions.npz``: test_scores, test_y, test_a)."""
    return confusion_counts(
        predictions["test_y"],
        np.asarray(predictions["test_scores"]).argmax(1),
        predictions["test_a"],
        n_groups,
        n_classes,
    )


def paired_counts_from_predictions(first: Mapping, second: Mapping, n_groups: int, n_classes: int) -> np.ndarray:
    """Joint counts of two stored runs of one seed, refused unless both scored the same test rows in the same order."""
    for key in ("test_ids", "test_y", "test_a"):
        if not np.array_equal(np.asarray(first[key]), np.asarray(second[key])):
            raise ValueError(
                f"the two runs' {key} differ: a paired comparison needs the same test rows in the same order "
                "(same dataset, task and split); compare runs of one comparison"
            )
    return paired_counts(
        first["test_y"],
        np.asarray(first["test_scores"]).argmax(1),
        np.asarray(second["test_scores"]).argmax(1),
        first["test_a"],
        n_groups,
        n_classes,
    )


def two_level_draws(counts_per_seed: Sequence, n_resamples: int, seed: int = 0, resample_rows: bool = True):
    """Seed indices (B, S) drawn with replacement and, for each, a row resample of that seed's counts (B, S, ...).

    With ``resample_rows=False`` the drawn seeds keep their counts (seeds-only bootstrap, test set held fixed).
    """
    counts = _stacked(counts_per_seed)
    rng = np.random.default_rng(seed)
    n_seeds = len(counts)
    index = rng.integers(0, n_seeds, size=(n_resamples, n_seeds))
    resampled = counts[index]
    if resample_rows:
        for s in range(n_seeds):
            drawn = index == s
            resampled[drawn] = _multinomial_resamples(counts[s], int(drawn.sum()), rng)
    return index, resampled


def two_level_replicates(resampled) -> dict[str, np.ndarray]:
    """Each replicate's mean over its S drawn seeds of every metric: (B, S, G, C, C) -> {metric: (B,)}.

    A metric undefined in a drawn seed's resample is left out of that replicate's mean (NaN if all are).
    """
    resampled = np.asarray(resampled)
    values = metrics_from_counts(resampled.reshape(-1, *resampled.shape[2:]))
    return {name: _defined_mean(values[name].reshape(resampled.shape[:2])) for name in METRIC_NAMES}


def paired_two_level_replicates(resampled_joint) -> dict[str, np.ndarray]:
    """Each replicate's mean over its drawn seeds of metric(A) − metric(B): (B, S, G, C, C, C) -> {metric: (B,)}."""
    joint = np.asarray(resampled_joint)
    flat = joint.reshape(-1, *joint.shape[2:])
    first, second = metrics_from_counts(flat.sum(axis=-1)), metrics_from_counts(flat.sum(axis=-2))
    return {name: _defined_mean((first[name] - second[name]).reshape(joint.shape[:2])) for name in METRIC_NAMES}


def hierarchical_mean(
    counts_per_seed: Sequence, n_resamples: int = 1000, level: float = 0.95, seed: int = 0, resample_rows: bool = True
) -> dict:
    """Mean over seeds of every metric with a two-level bootstrap percentile interval.

    ``counts_per_seed``: one counts[g, y, ŷ] per seed (``counts_from_predictions``). Estimate = the mean of the
    per-seed metrics over the seeds where it is defined.
    """
    counts = _stacked(counts_per_seed)
    per_seed = metrics_from_counts(counts)
    _, resampled = two_level_draws(counts, n_resamples, seed, resample_rows)
    replicates = two_level_replicates(resampled)
    metrics = {}
    for name in METRIC_NAMES:
        estimate = float(_defined_mean(per_seed[name][None])[0])
        metrics[name] = {"mean": estimate, **percentile_interval(replicates[name], estimate, level)}
    return nan_to_none(
        {"method": _method(n_resamples, seed, resample_rows), "level": level, "seeds": len(counts), "metrics": metrics}
    )


def hierarchical_paired_difference(
    joint_counts_per_seed: Sequence,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    resample_rows: bool = True,
) -> dict:
    """Paired difference A − B of every metric's mean over the seeds both ran, interval and two-sided p-value.

    ``joint_counts_per_seed``: one counts[g, y, ŷ_A, ŷ_B] per shared seed (``paired_counts_from_predictions``).
    Estimate = mean over seeds of metric(A) − metric(B) where both are defined; p-value as ``bootstrap_p_value``.
    """
    joint = _stacked(joint_counts_per_seed)
    first, second = metrics_from_counts(joint.sum(axis=-1)), metrics_from_counts(joint.sum(axis=-2))
    _, resampled = two_level_draws(joint, n_resamples, seed, resample_rows)
    replicates = paired_two_level_replicates(resampled)
    metrics = {}
    for name in METRIC_NAMES:
        estimate = float(_defined_mean((first[name] - second[name])[None])[0])
        metrics[name] = {
            "mean_a": float(_defined_mean(first[name][None])[0]),
            "mean_b": float(_defined_mean(second[name][None])[0]),
            "difference": estimate,
            **percentile_interval(replicates[name], estimate, level),
            "p_value": bootstrap_p_value(replicates[name]),
        }
    return nan_to_none(
        {"method": _method(n_resamples, seed, resample_rows), "level": level, "seeds": len(joint), "metrics": metrics}
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


def _stacked(counts_per_seed: Sequence) -> np.ndarray:
    """Per-seed counts as one int64 array (S, ...), refused unless every seed has the same cells."""
    shapes = {np.shape(c) for c in counts_per_seed}
    if len(counts_per_seed) == 0:
        raise ValueError("no seeds: pass one counts array per seed")
    if len(shapes) != 1:
        raise ValueError(
            f"every seed's counts must have the same shape (same groups and classes); got {sorted(shapes)}"
        )
    return np.stack([np.asarray(c, dtype=np.int64) for c in counts_per_seed])


def _defined_mean(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the non-NaN entries; NaN where there are none."""
    defined = ~np.isnan(values)
    total = np.where(defined, values, 0.0).sum(axis=-1)
    n = defined.sum(axis=-1)
    return np.divide(total, n, out=np.full(total.shape, np.nan), where=n > 0)


def _method(n_resamples: int, seed: int, resample_rows: bool) -> str:
    rows = "then a multinomial resample of its test rows" if resample_rows else "test rows held fixed"
    return (
        f"two-level bootstrap: seeds drawn with replacement, {rows}; {n_resamples} resamples, seed {seed}; "
        "percentile interval widened to hold the estimate"
    )
