"""Uncertainty for the metrics within one run: bootstrap intervals over test rows (across seeds: compare.t_interval).

A row-level bootstrap (draw n test rows with replacement) only changes how many
rows fall in each (group, y, ŷ) cell, and those cell counts are exactly
Multinomial(n, counts / n). Every metric is a function of the counts, so all
resamples are drawn at once as a (B, G·C·C) multinomial and evaluated in one
batched ``metrics_from_counts`` call.

Two interval constructions, chosen per metric (docs/METRICS.md, "Uncertainty"):

- ``acc`` and ``bal_acc`` are smooth functions of the counts: BCa (Efron 1987;
  Efron & Tibshirani 1993, ch. 14; DiCiccio & Efron 1996), with the acceleration
  from the exact leave-one-row-out jackknife, computed once per non-empty cell.
- The gaps (``eod_max``, ``eod_mean``, ``dp_diff``, ``eopp_diff``), ``wga`` and the
  accuracy stds are maxima, minima or norms of per-group rates. Their bootstrap
  distribution sits above the estimate when groups are close (the percentile
  interval can then exclude its own estimate) and the bootstrap of such a statistic
  is inconsistent at ties (Andrews 2000). Instead a simultaneous sup-t band covers
  the smooth rates they are built from (Montiel Olea & Plagborg-Møller 2019), and the
  metric's interval is the range of the metric over that band (a projection
  interval): it covers whenever the band does and always holds the estimate.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from fairfacebench.metrics.fairness import (
    METRIC_NAMES,
    _fairness_classes,
    _rates,
    confusion_counts,
    metrics_from_counts,
)
from fairfacebench.plain import nan_to_none

# A rate computed from fewer rows than this says little about its group: the interval is flagged uninformative.
MIN_GROUP_ROWS = 10

BCA_METRICS = ("acc", "bal_acc")
PROJECTION_METRICS = tuple(name for name in METRIC_NAMES if name not in BCA_METRICS)

_NORMAL = NormalDist()


def bootstrap_intervals(
    y_true,
    y_pred,
    groups,
    n_groups: int,
    n_classes: int = 2,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    group_names=None,
) -> dict:
    """Bootstrap intervals over test rows for every metric in METRIC_NAMES (see ``intervals_from_counts``)."""
    counts = confusion_counts(y_true, y_pred, groups, n_groups, n_classes)
    return intervals_from_counts(counts, n_resamples, level, seed, group_names)


def intervals_from_counts(
    counts, n_resamples: int = 1000, level: float = 0.95, seed: int = 0, group_names=None
) -> dict:
    """BCa intervals for acc and bal_acc, sup-t projection intervals for the rest, from counts[g, y, ŷ].

    Returns ``{"method", "level", "n_resamples", "intervals": {metric: [lo, hi]},
    "nan_resamples": {metric: count}, "uninformative": {metric: reason},
    "widened_to_estimate": [metric, ...]}``. Every interval holds its point
    estimate: if a construction does not (BCa can, in extreme tails), it is widened
    to the estimate and the metric is listed in ``widened_to_estimate``. A metric
    undefined on the test set has bounds None. ``uninformative`` names intervals of
    zero width and those resting on a rate of fewer than MIN_GROUP_ROWS rows.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95; got {level}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer; got {n_resamples}")
    counts = np.asarray(counts)
    n_groups = counts.shape[0]
    names = [f"a={g}" for g in range(n_groups)] if group_names is None else [str(g) for g in group_names]
    if len(names) != n_groups:
        raise ValueError(f"group_names has {len(names)} entries but the counts have {n_groups} groups: {names}")
    estimate = metrics_from_counts(counts)
    draws = _multinomial_resamples(counts, n_resamples, seed)
    values = metrics_from_counts(draws)
    jackknife, weights = _jackknife(counts)
    intervals = {
        name: bca_interval(estimate[name], values[name], jackknife[name], weights, level) for name in BCA_METRICS
    }
    projected, caveats = _projection_intervals(counts, draws, level, names)
    intervals.update(projected)
    widened, no_resample = [], []
    for name in METRIC_NAMES:
        low, high = intervals[name]
        if math.isnan(estimate[name]):
            intervals[name] = [math.nan, math.nan]
        elif math.isnan(low) or math.isnan(high):
            no_resample.append(name)
            intervals[name] = [0.0, 1.0]
        elif not low <= estimate[name] <= high:
            widened.append(name)
            intervals[name] = [min(low, estimate[name]), max(high, estimate[name])]
    for name in no_resample:
        caveats[name] = [*caveats.get(name, []), "no resample defines it: the interval is its whole range [0, 1]"]
    uninformative = _uninformative(counts, intervals, caveats, names)
    return nan_to_none(
        {
            "method": (
                f"bootstrap over test rows by multinomial resampling of per-(group,y,yhat) confusion counts, "
                f"{n_resamples} resamples, seed {seed}: BCa (jackknife acceleration) for {', '.join(BCA_METRICS)}; "
                f"projection of a simultaneous sup-t band on the per-group rates for {', '.join(PROJECTION_METRICS)}"
            ),
            "level": level,
            "n_resamples": n_resamples,
            "intervals": {name: [float(b) for b in intervals[name]] for name in METRIC_NAMES},
            "nan_resamples": {name: int(np.isnan(values[name]).sum()) for name in METRIC_NAMES},
            "uninformative": uninformative,
            "widened_to_estimate": widened,
        }
    )


def bca_interval(estimate: float, replicates, jackknife, weights, level: float = 0.95) -> list[float]:
    """BCa interval [θ*(α₁), θ*(α₂)] (Efron & Tibshirani 1993, eq. 14.9-14.15).

    α₁,₂ = Φ(z₀ + (z₀ + z_{α})/(1 − a(z₀ + z_{α}))) with z_{α} = Φ⁻¹((1 ∓ level)/2);
    bias correction z₀ = Φ⁻¹(p), p = (#{θ* < θ̂} + ½·#{θ* = θ̂}) / B (ties split, as
    scipy.stats.bootstrap does), p clipped to [½/B, 1 − ½/B] so z₀ stays finite;
    acceleration a = Σ w_i d_i³ / (6 (Σ w_i d_i²)^{3/2}) with d_i = θ̄ − θ_(i) over the
    jackknife values θ_(i) of weight w_i, θ̄ their weighted mean (eq. 14.15). Quantiles
    θ*(α) are numpy's linear interpolation. Undefined (NaN) replicates and jackknife
    values are left out; with no defined replicate both bounds are NaN.
    """
    theta = np.asarray(replicates, dtype=float)
    theta = theta[~np.isnan(theta)]
    if theta.size == 0 or math.isnan(estimate):
        return [math.nan, math.nan]
    b = theta.size
    below = (np.count_nonzero(theta < estimate) + 0.5 * np.count_nonzero(theta == estimate)) / b
    z0 = _NORMAL.inv_cdf(min(max(below, 0.5 / b), 1 - 0.5 / b))
    jack = np.asarray(jackknife, dtype=float)
    w = np.asarray(weights, dtype=float)
    keep = ~np.isnan(jack)
    jack, w = jack[keep], w[keep]
    d = (w @ jack / w.sum() - jack) if w.sum() > 0 else np.zeros(0)
    spread = float(w @ d**2)
    a = float(w @ d**3) / (6 * spread**1.5) if spread > 0 else 0.0
    bounds = []
    for z in (_NORMAL.inv_cdf((1 - level) / 2), _NORMAL.inv_cdf((1 + level) / 2)):
        shrink = 1 - a * (z0 + z)
        # shrink -> 0+ sends the adjusted level to Φ(±∞): the far end of the replicates
        alpha = _NORMAL.cdf(z0 + (z0 + z) / shrink) if shrink > 0 else float(z > 0)
        bounds.append(float(np.quantile(theta, alpha)))
    return bounds


def sup_t_band(estimate, replicates, level: float = 0.95, bounds: tuple[float, float] = (0.0, 1.0)) -> dict:
    """Simultaneous band θ̂_k ± c·s_k over coordinates k (Montiel Olea & Plagborg-Møller 2019, sup-t band).

    ``estimate`` has shape (K,), ``replicates`` (B, K). s_k is the std (ddof=1) of coordinate k over the
    replicates where it is defined; c is the ``level`` quantile of max_k |θ*_bk − θ̂_k| / s_k over
    coordinates with s_k > 0. Coordinates with s_k = 0 get zero width (flagged ``constant``); those never
    defined in a replicate get the whole range ``bounds`` (flagged ``never_defined``); those undefined in
    the estimate get NaN. The band is clipped to ``bounds``.
    """
    estimate = np.asarray(estimate, dtype=float)
    replicates = np.asarray(replicates, dtype=float)
    if replicates.ndim != 2 or replicates.shape[1] != estimate.size:
        raise ValueError(f"replicates must have shape (B, {estimate.size}); got {replicates.shape}")
    defined = ~np.isnan(replicates)
    n_defined = defined.sum(axis=0)
    filled = np.where(defined, replicates, 0.0)
    mean = np.divide(filled.sum(axis=0), n_defined, out=np.zeros(estimate.size), where=n_defined > 0)
    squares = np.where(defined, (replicates - mean) ** 2, 0.0).sum(axis=0)
    sd = np.sqrt(np.divide(squares, n_defined - 1, out=np.zeros(estimate.size), where=n_defined > 1))
    used = ~np.isnan(estimate) & (sd > 0)
    deviation = np.abs(replicates[:, used] - estimate[used]) / sd[used]
    worst = np.where(np.isnan(deviation), -np.inf, deviation).max(axis=1, initial=-np.inf)
    worst = worst[np.isfinite(worst)]
    c = float(np.quantile(worst, level)) if worst.size else 0.0
    low = np.clip(estimate - c * sd, *bounds)
    high = np.clip(estimate + c * sd, *bounds)
    never = ~np.isnan(estimate) & (n_defined == 0)
    low[never], high[never] = bounds
    return {
        "low": low,
        "high": high,
        "c": c,
        "constant": ~np.isnan(estimate) & (n_defined > 0) & (sd == 0),
        "never_defined": never,
    }


def range_interval(low, high) -> list[float]:
    """Range of max_pairs |d| over the box d ∈ [low, high] (pairs on axis 0; NaN pairs left out).

    A pair's |d| can be anywhere in [dist(0, [low, high]), max(|low|, |high|)], and the pairs vary
    independently in the box, so the max over pairs spans [max_p dist_p, max_p reach_p].
    """
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    defined = ~np.isnan(low)
    if not defined.any():
        return [math.nan, math.nan]
    low, high = low[defined], high[defined]
    distance = np.where((low <= 0) & (high >= 0), 0.0, np.minimum(np.abs(low), np.abs(high)))
    reach = np.maximum(np.abs(low), np.abs(high))
    return [float(distance.max()), float(reach.max())]


def std_interval(estimate: float, low, high, values) -> list[float]:
    """Interval for the population std over the box [low, high] around ``values`` (NaN coordinates left out).

    |std(x) − std(x̂)| ≤ ‖x − x̂‖ / √K (the centring map has norm 1), so std lies in
    std(x̂) ± √(mean_k h_k²) with h_k = max(high_k − x̂_k, x̂_k − low_k), clipped to [0, ½]
    (no std of values in [0, 1] exceeds ½).
    """
    values = np.asarray(values, dtype=float)
    defined = ~np.isnan(values)
    if math.isnan(estimate) or not defined.any():
        return [math.nan, math.nan]
    reach = np.maximum(np.asarray(high)[defined] - values[defined], values[defined] - np.asarray(low)[defined])
    radius = float(np.sqrt(np.mean(reach**2)))
    return [max(0.0, estimate - radius), min(0.5, estimate + radius)]


def _multinomial_resamples(counts: np.ndarray, n_resamples: int, seed: int | np.random.Generator) -> np.ndarray:
    """(B, *counts.shape) confusion counts of B row-level bootstrap resamples, drawn as one multinomial."""
    n = int(counts.sum())
    if n == 0:
        raise ValueError("cannot bootstrap an empty test set (0 rows)")
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, counts.ravel() / n, size=n_resamples)
    return draws.reshape(n_resamples, *counts.shape)


def _jackknife(counts: np.ndarray) -> tuple[dict, np.ndarray]:
    """Leave-one-row-out metrics, one per non-empty cell (every row of a cell leaves the same counts), and weights.

    Weight = the cell's count, so weighted sums over cells equal sums over the n rows.
    """
    flat = counts.ravel()
    cells = np.flatnonzero(flat)
    left_out = np.repeat(flat[None, :], cells.size, axis=0)
    left_out[np.arange(cells.size), cells] -= 1
    return metrics_from_counts(left_out.reshape(cells.size, *counts.shape)), flat[cells].astype(float)


def _pair_differences(rates: np.ndarray) -> np.ndarray:
    """rate_i − rate_j for every pair of groups i < j: (..., G, K) -> (..., P, K); NaN if either is undefined."""
    first, second = np.triu_indices(rates.shape[-2], 1)
    return rates[..., first, :] - rates[..., second, :]


def _band(estimate: np.ndarray, replicates: np.ndarray, level: float, bounds: tuple[float, float]) -> dict:
    """sup_t_band over every entry of ``estimate`` (any shape); low/high/flags come back in that shape."""
    band = sup_t_band(estimate.ravel(), replicates.reshape(len(replicates), estimate.size), level, bounds)
    return {k: v.reshape(estimate.shape) if isinstance(v, np.ndarray) else v for k, v in band.items()}


def _projection_intervals(counts: np.ndarray, draws: np.ndarray, level: float, names: list) -> tuple[dict, dict]:
    """Projection intervals of the non-smooth metrics and, per metric, the rates whose band is degenerate."""
    rates, star = _rates(counts), _rates(draws)
    fair = _fairness_classes(counts.shape[-1])
    per_class_gap = {}
    caveats = {}
    for rate in ("tpr", "fpr", "selection_rate"):
        band = _band(_pair_differences(rates[rate][:, fair]), _pair_differences(star[rate][..., fair]), level, (-1, 1))
        per_class_gap[rate] = [range_interval(low, high) for low, high in zip(band["low"].T, band["high"].T)]
        caveats[rate] = _band_caveats(band, rate, names, pairs=True)
    intervals = {
        "eopp_diff": _class_mean(per_class_gap["tpr"]),
        "dp_diff": _class_mean(per_class_gap["selection_rate"]),
        "eod_max": _class_mean([_both(t, f, max) for t, f in zip(per_class_gap["tpr"], per_class_gap["fpr"])]),
        "eod_mean": _class_mean(
            [_both(t, f, lambda x, y: (x + y) / 2) for t, f in zip(per_class_gap["tpr"], per_class_gap["fpr"])]
        ),
    }
    # Accuracy within cell (y, a) is the recall of class y in group a, i.e. its one-vs-rest TPR.
    cells = _band(rates["tpr"], star["tpr"], level, (0, 1))
    defined = ~np.isnan(rates["tpr"])
    intervals["wga"] = (
        [float(cells["low"][defined].min()), float(cells["high"][defined].min())]
        if defined.any()
        else [math.nan, math.nan]
    )
    estimate = metrics_from_counts(counts)
    intervals["cell_acc_std"] = std_interval(estimate["cell_acc_std"], cells["low"], cells["high"], rates["tpr"])
    groups = _band(rates["group_acc"][:, None], star["group_acc"][..., None], level, (0, 1))
    intervals["group_acc_std"] = std_interval(
        estimate["group_acc_std"], groups["low"][:, 0], groups["high"][:, 0], rates["group_acc"]
    )
    caveats.update(cell=_band_caveats(cells, "cell accuracy", names), group=_band_caveats(groups, "accuracy", names))
    by_metric = {
        "eopp_diff": caveats["tpr"],
        "eod_max": caveats["tpr"] + caveats["fpr"],
        "eod_mean": caveats["tpr"] + caveats["fpr"],
        "dp_diff": caveats["selection_rate"],
        "wga": caveats["cell"],
        "cell_acc_std": caveats["cell"],
        "group_acc_std": caveats["group"],
    }
    return intervals, by_metric


def _both(first: list, second: list, combine) -> list[float]:
    """Bounds of combine(x, y) for x, y in two intervals, combine monotone increasing in both; NaN if either is."""
    if any(math.isnan(v) for v in (*first, *second)):
        return [math.nan, math.nan]
    return [combine(first[0], second[0]), combine(first[1], second[1])]


def _class_mean(per_class: list) -> list[float]:
    """Mean over classes of per-class bounds, over the classes where the gap is defined (as metrics_from_counts)."""
    defined = [bounds for bounds in per_class if not math.isnan(bounds[0])]
    if not defined:
        return [math.nan, math.nan]
    return [float(np.mean([b[0] for b in defined])), float(np.mean([b[1] for b in defined]))]


def _band_caveats(band: dict, rate: str, names: list, pairs: bool = False) -> list[str]:
    """Plain-language notes on band coordinates with no bootstrap spread or never defined in a resample."""
    if pairs:
        first, second = np.triu_indices(len(names), 1)
        labels = [f"{rate.upper()} gap {names[i]} vs {names[j]}" for i, j in zip(first, second)]
    else:
        labels = [f"{rate} of {name}" for name in names]
    notes = []
    for flag, text in (
        ("constant", "has no spread over the resamples (taken as exact)"),
        ("never_defined", "is undefined in every resample (its whole range is used)"),
    ):
        for p, k in zip(*np.nonzero(band[flag])):
            notes.append(f"{labels[p]}{'' if band[flag].shape[1] == 1 else f' (class {k})'} {text}")
    return notes


def _uninformative(counts: np.ndarray, intervals: dict, caveats: dict, names: list) -> dict[str, str]:
    """{metric: reason} for intervals of zero width or resting on a rate of fewer than MIN_GROUP_ROWS rows."""
    rates = _rates(counts)
    fair = _fairness_classes(counts.shape[-1])

    def small(denominators: np.ndarray, what: str) -> list[str]:
        """Groups whose (non-zero) denominator of a rate is below MIN_GROUP_ROWS."""
        found = []
        for g, k in zip(*np.nonzero((denominators > 0) & (denominators < MIN_GROUP_ROWS))):
            label = "" if denominators.shape[1] == 1 else f" (class {k})"
            found.append(f"{names[g]}{label}: {int(denominators[g, k])} {what}")
        return found

    positives = small(rates["class_n"][:, fair], "positives")
    negatives = small(rates["negatives"][:, fair], "negatives")
    rows = small(rates["group_n"][:, None], "rows")
    cells = small(rates["class_n"], "rows in (y, a) cell")
    classes = rates["class_n"].sum(axis=0)
    sparse = {
        "acc": [f"{int(counts.sum())} test rows"] if counts.sum() < MIN_GROUP_ROWS else [],
        "bal_acc": [f"class {k}: {int(n)} rows" for k, n in enumerate(classes) if 0 < n < MIN_GROUP_ROWS],
        "eopp_diff": positives,
        "eod_max": positives + negatives,
        "eod_mean": positives + negatives,
        "dp_diff": rows,
        "wga": cells,
        "cell_acc_std": cells,
        "group_acc_std": rows,
    }
    reasons = {}
    for name in METRIC_NAMES:
        low, high = intervals[name]
        parts = []
        if not math.isnan(low) and low == high:
            parts.append("zero width")
        if sparse[name]:
            parts.append(f"rates from fewer than {MIN_GROUP_ROWS} rows ({'; '.join(sparse[name])})")
        parts += caveats.get(name, [])
        if parts:
            reasons[name] = "; ".join(parts)
    return reasons
