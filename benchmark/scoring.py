"""Predictions into metrics: the check every predictor's scores pass before any metric, and the evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np

from fairfacebench.data import TaskData
from fairfacebench.metrics.fairness import compute_metrics


def evaluate(scores: np.ndarray, y: np.ndarray, a: np.ndarray, data: TaskData) -> Any:
    return compute_metrics(
        y, scores.argmax(1), a, data.group_names, n_classes=data.n_classes, class_names=data.target_classes
    )


class InvalidPredictions(RuntimeError):
    """A predictor returned scores that are not (N, C) probabilities: the run cannot be scored."""


PROBABILITY_TOLERANCE = 1e-3  # rows of float32 softmax sum to 1 far closer than this


def checked_scores(scores: Any, n: int, n_classes: int, split: str) -> np.ndarray:
    """The predictor's scores, refused unless an (n, n_classes) array of finite probabilities (rows sum to 1)."""
    try:  # a copy: a predictor that kept the array it returned cannot change the scores once checked
        arr = np.array(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidPredictions(
            f"{split} scores are not a numeric array ({exc}); return (N, C) probabilities"
        ) from None
    if arr.shape != (n, n_classes):
        raise InvalidPredictions(
            f"{split} scores have shape {arr.shape}, expected ({n}, {n_classes}): one row per image"
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InvalidPredictions(
            f"{split} scores hold {int(bad.sum())} NaN or infinite value(s) (first in row {int(np.argmax(bad.any(1)))})"
        )
    off = np.abs(arr.sum(axis=1) - 1)
    worst = int(off.argmax())
    if (
        arr.min() < -PROBABILITY_TOLERANCE
        or arr.max() > 1 + PROBABILITY_TOLERANCE
        or off[worst] > PROBABILITY_TOLERANCE
    ):
        raise InvalidPredictions(
            f"{split} scores are not probabilities (values in [{arr.min():.4g}, {arr.max():.4g}], row {worst} sums "
            f"to {arr[worst].sum():.4g}): return rows in [0, 1] summing to 1, e.g. a softmax of the logits"
        )
    return arr
