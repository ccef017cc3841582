"""Calibration per sensitive group: top-label expected calibration error, Brier score and reliability diagrams.

ECE follows Guo et al. (ICML 2017, Sec. 2): the top-label confidence max_c p̂_c of each row is binned into M
equal-width bins I_m = ((m−1)/M, m/M] (the first bin also holds 0), and
ECE = Σ_m |B_m|/n · |acc(B_m) − conf(B_m)|. The Brier score follows scikit-learn's ``brier_score_loss``: binary
mean (p̂₁ − y)² in [0, 1], several classes mean Σ_c (p̂_c − 1[y = c])² in [0, 2] (Brier 1950).
"""

from __future__ import annotations

import math

import numpy as np

from fairfacebench.metrics.fairness import _as_codes
from fairfacebench.plain import nan_to_none

N_BINS = 15

CALIBRATION_DEFINITIONS = {
    "ece": (
        "top-label expected calibration error: Σ_m |B_m|/n · |acc(B_m) − conf(B_m)| over 15 equal-width bins "
        "((m−1)/15, m/15] of the confidence max_c p̂_c (Guo et al. 2017)"
    ),
    "brier": "binary: mean (p̂(Y=1) − y)²; several classes: mean Σ_c (p̂_c − 1[y=c])² (= sklearn brier_score_loss)",
    "ece_max": "largest per-group ECE over groups with rows",
    "ece_gap": "max_a ECE_a − min_a ECE_a over groups with rows (NaN if fewer than two)",
    "brier_max": "largest per-group Brier score over groups with rows",
    "brier_gap": "max_a Brier_a − min_a Brier_a over groups with rows (NaN if fewer than two)",
}


def reliability_bins(scores, y_true, n_bins: int = N_BINS) -> dict[str, np.ndarray]:
    """Per bin of top-label confidence: lower and upper edge, row count, mean confidence, accuracy (NaN if empty).

    Bin m holds the confidences in ((m−1)/M, m/M]; a confidence of 0 goes to the first bin.
    """
    scores, y_true = _checked(scores, y_true)
    if n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins}")
    confidence = scores.max(axis=1)
    correct = (scores.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    total_confidence = np.bincount(index, weights=confidence, minlength=n_bins)
    total_correct = np.bincount(index, weights=correct, minlength=n_bins)
    empty = count == 0
    safe = np.where(empty, 1, count)
    return {
        "lower": edges[:-1],
        "upper": edges[1:],
        "count": count,
        "confidence": np.where(empty, np.nan, total_confidence / safe),
        "accuracy": np.where(empty, np.nan, total_correct / safe),
    }


def expected_calibration_error(scores, y_true, n_bins: int = N_BINS) -> float:
    """Top-label ECE = Σ_m |B_m|/n · |acc(B_m) − conf(B_m)| (Guo et al. 2017, eq. 3); NaN for no rows."""
    bins = reliability_bins(scores, y_true, n_bins)
    n = bins["count"].sum()
    if n == 0:
        return math.nan
    filled = bins["count"] > 0
    gaps = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
    return float(bins["count"][filled] @ gaps / n)


def brier_score(scores, y_true) -> float:
    """Binary: mean (p̂₁ − y)²; C > 2: mean Σ_c (p̂_c − 1[y=c])² (sklearn ``brier_score_loss``); NaN for no rows."""
    scores, y_true = _checked(scores, y_true)
    if len(y_true) == 0:
        return math.nan
    if scores.shape[1] == 2:
        return float(np.mean((scores[:, 1] - y_true) ** 2))
    onehot = np.eye(scores.shape[1])[y_true]
    return float(np.mean(((scores - onehot) ** 2).sum(axis=1)))


def calibration_by_group(scores, y_true, groups, group_names, n_bins: int = N_BINS) -> dict:
    """ECE, Brier score and reliability diagram of each sensitive group, and their worst-group value and gap.

    ``scores`` (N, C) probabilities (a stored ``test_scores``), ``y_true`` and ``groups`` integer codes
    (``test_y``, ``test_a``). Per-group ECE is biased upward in small groups (fewer rows per bin), so a gap
    between a small and a large group is partly noise.
    """
    group_names = list(group_names)
    scores, y_true = _checked(scores, y_true)
    groups = _as_codes(groups, "groups", len(group_names), "len(group_names)")
    if len(groups) != len(y_true):
        raise ValueError(f"groups must have one entry per row; got {len(groups)} for {len(y_true)} rows")
    per_group = []
    for g, name in enumerate(group_names):
        rows = groups == g
        bins = reliability_bins(scores[rows], y_true[rows], n_bins)
        per_group.append(
            {
                "group": name,
                "n": int(rows.sum()),
                "ece": expected_calibration_error(scores[rows], y_true[rows], n_bins),
                "brier": brier_score(scores[rows], y_true[rows]),
                "reliability": [
                    {k: (int(bins[k][m]) if k == "count" else float(bins[k][m])) for k in bins} for m in range(n_bins)
                ],
            }
        )
    summary = {}
    for key in ("ece", "brier"):
        values = np.array([row[key] for row in per_group if row["n"] > 0])
        summary[f"{key}_max"] = float(values.max()) if values.size else math.nan
        summary[f"{key}_gap"] = float(values.max() - values.min()) if values.size >= 2 else math.nan
    overall = {"ece": expected_calibration_error(scores, y_true, n_bins), "brier": brier_score(scores, y_true)}
    return nan_to_none(
        {"overall": overall, "summary": summary, "per_group": per_group, "definitions": CALIBRATION_DEFINITIONS}
    )


def _checked(scores, y_true) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) probabilities and N label codes in [0, C), or a ValueError naming what is wrong."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must be (N, C) class probabilities with C >= 2; got shape {scores.shape}")
    if scores.size and (not np.isfinite(scores).all() or scores.min() < 0 or scores.max() > 1):
        raise ValueError(
            f"scores must be probabilities in [0, 1]; got values in [{np.nanmin(scores)}, {np.nanmax(scores)}] "
            "(apply a softmax to logits first)"
        )
    y_true = _as_codes(y_true, "y_true", scores.shape[1], "the number of score columns")
    if len(y_true) != len(scores):
        raise ValueError(f"y_true has {len(y_true)} entries but scores have {len(scores)} rows")
    return scores, y_true
