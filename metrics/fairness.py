"""Group-fairness metrics of docs/METRICS.md, computed from per-(group, y, ŷ) confusion counts.

Every metric is a function of ``counts[g, y, ŷ]``, so any leading batch axis
(bootstrap resamples) costs no extra Python.  Undefined quantities are NaN
with a reason, never 0 (where this differs from fairlearn: docs/METRICS.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fairfacebench.plain import nan_to_none

METRIC_NAMES = ("acc", "bal_acc", "eod_max", "eod_mean", "dp_diff", "eopp_diff", "wga", "group_acc_std", "cell_acc_std")

_OVR = "; non-binary Y: one-vs-rest per class, averaged over the classes where it is defined"
_GAP = "over groups where the rate is defined (NaN if fewer than two)"

METRIC_DEFINITIONS = {
    "acc": "P(Ŷ=Y) over all test rows",
    "bal_acc": "mean over classes c present in Y of recall P(Ŷ=c | Y=c) (= sklearn balanced_accuracy_score)",
    "eod_max": (
        f"max(max_a TPR_a − min_a TPR_a, max_a FPR_a − min_a FPR_a), each gap {_GAP} "
        f"(= fairlearn equalized_odds_difference, agg='worst_case'){_OVR}"
    ),
    "eod_mean": (
        f"½[(max_a TPR_a − min_a TPR_a) + (max_a FPR_a − min_a FPR_a)], each gap {_GAP} "
        f"(= fairlearn equalized_odds_difference, agg='mean'){_OVR}"
    ),
    "dp_diff": (f"max_a P(Ŷ=1|A=a) − min_a P(Ŷ=1|A=a) {_GAP} (= fairlearn demographic_parity_difference){_OVR}"),
    "eopp_diff": (
        f"max_a TPR_a − min_a TPR_a {_GAP} (equal opportunity; = fairlearn equal_opportunity_difference){_OVR}"
    ),
    "wga": "min over non-empty cells (y, a) of P(Ŷ=Y | Y=y, A=a) (worst-group accuracy, SubpopBench/WILDS)",
    "group_acc_std": (
        "population std (ddof=0) of per-sensitive-group accuracy P(Ŷ=Y | A=a) over non-empty groups "
        "(NaN if fewer than two)"
    ),
    "cell_acc_std": (
        "population std (ddof=0) of per-cell accuracy P(Ŷ=Y | Y=y, A=a) over non-empty (y, a) cells "
        "(the std of per-class accuracies that seed 001 drives down, with the (class, group) cells as its classes)"
    ),
}


@dataclass
class MetricReport:
    """Summary metrics, per-group table and the notes that explain every NaN."""

    summary: dict[str, float]
    per_group: list[dict]
    per_class_group: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-serialisable dict; NaN (an undefined quantity) is written as None (JSON null)."""
        return nan_to_none(
            {
                "summary": self.summary,
                "definitions": METRIC_DEFINITIONS,
                "per_group": self.per_group,
                "per_class_group": self.per_class_group,
                "notes": self.notes,
                "nan_encoding": "undefined values (NaN) are written as null",
            }
        )


def confusion_counts(y_true, y_pred, groups, n_groups: int, n_classes: int = 2) -> np.ndarray:
    """Counts ``counts[g, y, ŷ]`` of test rows per (sensitive group, target, prediction).

    All three inputs are integer codes: ``groups`` in [0, n_groups), labels in
    [0, n_classes). One ``np.bincount`` over the flattened cell index.
    """
    y_true = _as_codes(y_true, "y_true", n_classes, "n_classes")
    y_pred = _as_codes(y_pred, "y_pred", n_classes, "n_classes")
    groups = _as_codes(groups, "groups", n_groups, "n_groups")
    if not len(y_true) == len(y_pred) == len(groups):
        raise ValueError(
            f"y_true, y_pred and groups must have one entry per test row; "
            f"got lengths {len(y_true)}, {len(y_pred)}, {len(groups)}"
        )
    cell = (groups * n_classes + y_true) * n_classes + y_pred
    counts = np.bincount(cell, minlength=n_groups * n_classes * n_classes)
    return counts.astype(np.int64, copy=False).reshape(n_groups, n_classes, n_classes)


def metrics_from_counts(counts) -> dict:
    """All METRIC_NAMES from confusion counts (definitions in METRIC_DEFINITIONS).

    ``counts`` has shape (G, C, C) -> dict of floats, or (B, G, C, C) -> dict of
    arrays of shape (B,), one value per batch element (bootstrap resample).
    """
    counts = np.asarray(counts)
    if counts.ndim < 3 or counts.shape[-1] != counts.shape[-2] or counts.shape[-1] < 2:
        raise ValueError(
            f"counts must have shape (G, C, C) or (B, G, C, C) with C >= 2, indexed [g, y, ŷ]; got {counts.shape}"
        )
    rates = _rates(counts)
    fair = _fairness_classes(counts.shape[-1])
    tpr_gap = _gap(rates["tpr"][..., fair])
    fpr_gap = _gap(rates["fpr"][..., fair])
    values = {
        "acc": rates["acc"],
        "bal_acc": _defined_mean(rates["recall"], axis=-1),
        "eod_max": _defined_mean(np.maximum(tpr_gap, fpr_gap), axis=-1),
        "eod_mean": _defined_mean((tpr_gap + fpr_gap) / 2, axis=-1),
        "dp_diff": _defined_mean(_gap(rates["selection_rate"][..., fair]), axis=-1),
        "eopp_diff": _defined_mean(tpr_gap, axis=-1),
        # Accuracy within cell (y, a) is the recall of class y in group a, i.e. its one-vs-rest TPR.
        "wga": _defined_min(rates["tpr"], axis=(-2, -1)),
        "group_acc_std": _defined_std(rates["group_acc"]),
        "cell_acc_std": _defined_std(rates["tpr"].reshape(*rates["tpr"].shape[:-2], -1)),
    }
    return {name: _scalar_or_array(values[name]) for name in METRIC_NAMES}


def compute_metrics(y_true, y_pred, groups, group_names, n_classes: int = 2, class_names=None) -> MetricReport:
    """Summary metrics, per-group table (and per-(class, group) table if C > 2) with notes.

    ``groups`` holds codes into ``group_names``; labels are codes into
    ``class_names`` (default "0", "1", ...). For a binary target TPR/FPR/selection
    rate refer to the positive class Y=1.
    """
    group_names = list(group_names)
    class_names = [str(c) for c in range(n_classes)] if class_names is None else list(class_names)
    if len(class_names) != n_classes:
        raise ValueError(f"class_names has {len(class_names)} entries but n_classes={n_classes}: {class_names}")
    counts = confusion_counts(y_true, y_pred, groups, len(group_names), n_classes)
    rates = _rates(counts)
    summary = metrics_from_counts(counts)
    return MetricReport(
        summary=summary,
        per_group=_per_group_rows(rates, group_names, n_classes),
        per_class_group=_per_class_group_rows(rates, group_names, class_names) if n_classes > 2 else [],
        notes=_summary_notes(rates, summary, group_names, class_names),
    )


def _as_codes(values, name: str, n_codes: int, bound_name: str) -> np.ndarray:
    """1-D int64 codes in [0, n_codes), or a ValueError saying what was wrong."""
    codes = np.asarray(values)
    if codes.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one code per test row); got shape {codes.shape}")
    if codes.dtype != bool and not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(
            f"{name} must hold integer codes in [0, {n_codes}); got dtype {codes.dtype} "
            f"(map labels to codes, or argmax scores, first)"
        )
    codes = codes.astype(np.int64, copy=False)
    if codes.size and (codes.min() < 0 or codes.max() >= n_codes):
        raise ValueError(
            f"{name} has codes in [{codes.min()}, {codes.max()}] but {bound_name}={n_codes} allows [0, {n_codes - 1}]"
        )
    return codes


def _rates(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per-group and per-class rates from counts[..., g, y, ŷ]; NaN where the denominator is 0.

    Per-(group, class) arrays have shape (..., G, C) and are one-vs-rest for class c.
    """
    group_n = counts.sum(axis=(-2, -1))
    class_n = counts.sum(axis=-1)
    pred_n = counts.sum(axis=-2)
    hits = np.diagonal(counts, axis1=-2, axis2=-1)
    return {
        "group_n": group_n,
        "class_n": class_n,
        "negatives": group_n[..., None] - class_n,
        "acc": _ratio(hits.sum(axis=(-2, -1)), group_n.sum(axis=-1)),
        "recall": _ratio(hits.sum(axis=-2), class_n.sum(axis=-2)),
        "group_acc": _ratio(hits.sum(axis=-1), group_n),
        "tpr": _ratio(hits, class_n),
        "fpr": _ratio(pred_n - hits, group_n[..., None] - class_n),
        "selection_rate": _ratio(pred_n, group_n[..., None]),
    }


def _fairness_classes(n_classes: int) -> slice:
    """Classes whose one-vs-rest rates enter the TPR/FPR/selection-rate metrics.

    Binary: only Y=1, because class 0's one-vs-rest TPR is 1 − FPR of class 1,
    so averaging both would turn eopp_diff into the mean of the TPR and FPR gaps.
    """
    return slice(1, 2) if n_classes == 2 else slice(None)


def _ratio(num, den) -> np.ndarray:
    """num / den as float, NaN where den == 0 (undefined, not 0)."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=float), np.asarray(den, dtype=float))
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def _gap(rates: np.ndarray) -> np.ndarray:
    """max_a − min_a over the group axis (-2), ignoring NaN groups; NaN if fewer than two are defined."""
    defined = ~np.isnan(rates)
    high = np.where(defined, rates, -np.inf).max(axis=-2)
    low = np.where(defined, rates, np.inf).min(axis=-2)
    return np.where(defined.sum(axis=-2) >= 2, high - low, np.nan)


def _defined_mean(values: np.ndarray, axis) -> np.ndarray:
    """Mean over ``axis`` of the non-NaN entries; NaN if there are none (no warning)."""
    defined = ~np.isnan(values)
    return _ratio(np.where(defined, values, 0.0).sum(axis=axis), defined.sum(axis=axis))


def _defined_min(values: np.ndarray, axis) -> np.ndarray:
    """Min over ``axis`` of the non-NaN entries; NaN if there are none."""
    defined = ~np.isnan(values)
    low = np.where(defined, values, np.inf).min(axis=axis)
    return np.where(defined.any(axis=axis), low, np.nan)


def _defined_std(values: np.ndarray) -> np.ndarray:
    """Population std (ddof=0) over the last axis of the non-NaN entries; NaN if fewer than two."""
    defined = ~np.isnan(values)
    mean = _defined_mean(values, axis=-1)
    squared = np.where(defined, (values - mean[..., None]) ** 2, 0.0)
    n = defined.sum(axis=-1)
    return np.where(n >= 2, np.sqrt(_ratio(squared.sum(axis=-1), n)), np.nan)


def _scalar_or_array(value: np.ndarray):
    """A Python float for an unbatched result, the array itself for a batch."""
    return float(value) if np.ndim(value) == 0 else value


def _per_group_rows(rates: dict, group_names: list, n_classes: int) -> list[dict]:
    """One row per sensitive group: n, positives, acc, TPR, FPR, selection rate and a note for every NaN."""
    binary = n_classes == 2
    rows = []
    for g, name in enumerate(group_names):
        n = int(rates["group_n"][g])
        reasons = []
        if n == 0:
            reasons.append("no rows: acc, TPR, FPR, selection rate undefined")
        elif binary and rates["class_n"][g, 1] == 0:
            reasons.append("no positives (Y=1): TPR undefined")
        if binary and n > 0 and rates["negatives"][g, 1] == 0:
            reasons.append("no negatives (Y=0): FPR undefined")
        if not binary:
            reasons.append("non-binary target: TPR, FPR, selection rate are one-vs-rest per class, see per_class_group")
        rows.append(
            {
                "group": name,
                "n": n,
                "positives": int(rates["class_n"][g, 1]) if binary else None,
                "acc": float(rates["group_acc"][g]),
                "tpr": float(rates["tpr"][g, 1]) if binary else math.nan,
                "fpr": float(rates["fpr"][g, 1]) if binary else math.nan,
                "selection_rate": float(rates["selection_rate"][g, 1]) if binary else math.nan,
                "note": "; ".join(reasons),
            }
        )
    return rows


def _per_class_group_rows(rates: dict, group_names: list, class_names: list) -> list[dict]:
    """One row per (class, group) with one-vs-rest positives, TPR, FPR, selection rate and NaN notes."""
    rows = []
    for c, class_name in enumerate(class_names):
        for g, name in enumerate(group_names):
            n = int(rates["group_n"][g])
            reasons = []
            if n == 0:
                reasons.append("no rows: TPR, FPR, selection rate undefined")
            elif rates["class_n"][g, c] == 0:
                reasons.append(f"no rows with Y={class_name}: TPR undefined")
            if n > 0 and rates["negatives"][g, c] == 0:
                reasons.append(f"no rows with Y≠{class_name}: FPR undefined")
            rows.append(
                {
                    "class": class_name,
                    "group": name,
                    "n": n,
                    "positives": int(rates["class_n"][g, c]),
                    "tpr": float(rates["tpr"][g, c]),
                    "fpr": float(rates["fpr"][g, c]),
                    "selection_rate": float(rates["selection_rate"][g, c]),
                    "note": "; ".join(reasons),
                }
            )
    return rows


def _summary_notes(rates: dict, summary: dict, group_names: list, class_names: list) -> list[str]:
    """Plain-language notes on the target type, excluded groups/cells/classes and NaN metrics."""
    n_classes = len(class_names)
    names = np.asarray(group_names, dtype=object)
    nonempty = rates["group_n"] > 0
    notes = []
    if n_classes == 2:
        notes.append(f"binary target: TPR, FPR and selection rate are for the positive class Y=1 ({class_names[1]})")
    else:
        notes.append(
            f"non-binary target ({n_classes} classes): eod_max, eod_mean, dp_diff and eopp_diff are computed "
            "one-vs-rest per class and averaged over the classes where defined; acc, bal_acc, wga and "
            "group_acc_std use the multi-class predictions directly (wga over (y, a) cells)"
        )
    if not nonempty.all():
        notes.append(f"groups with no rows, excluded from every between-group metric: {list(names[~nonempty])}")
    for c in range(n_classes)[_fairness_classes(n_classes)]:
        label = "" if n_classes == 2 else f" for class {class_names[c]} (one-vs-rest)"
        for rate, lacking in (("tpr", "no positives"), ("fpr", "no negatives")):
            undefined = nonempty & np.isnan(rates[rate][:, c])
            if undefined.any():
                notes.append(
                    f"{rate.upper()} undefined ({lacking}){label} in groups {list(names[undefined])}: "
                    f"{_gap_scope(int((nonempty & ~undefined).sum()), n_classes > 2)} "
                    f"(fairlearn would count {rate.upper()}=0 for them)"
                )
    empty_cells = [f"(y={class_names[c]}, a={group_names[g]})" for g, c in zip(*np.nonzero(rates["class_n"] == 0))]
    if empty_cells:
        notes.append(f"wga: {len(empty_cells)} empty (y, a) cells excluded: {', '.join(empty_cells)}")
    absent = [class_names[c] for c in np.flatnonzero(rates["class_n"].sum(axis=0) == 0)]
    if absent:
        notes.append(f"bal_acc: classes absent from Y excluded (as sklearn does): {absent}")
    undefined_metrics = [name for name in METRIC_NAMES if math.isnan(summary[name])]
    if undefined_metrics:
        notes.append(f"undefined (NaN) metrics, see the notes above and per-group notes: {undefined_metrics}")
    return notes


def _gap_scope(n_defined: int, multiclass: bool) -> str:
    """How a between-group gap treats groups where its rate is undefined."""
    if n_defined >= 2:
        return f"its gap is taken over the {n_defined} groups where it is defined"
    if multiclass:
        return "fewer than two groups define it, so this class is left out of the class average"
    return "fewer than two groups define it, so its gap is NaN"
