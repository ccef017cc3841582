"""Accuracy at equal fairness: post-process a model's scores to a given equalized-odds tolerance, then score it.

Cruz & Hardt ("Unprocessing Seven Years of Algorithmic Fairness", ICLR 2024) compare fairness methods at equal
constraint violation: every model's scores are post-processed with group-specific randomised thresholds (the
optimal fair classifier on its group ROC convex hulls, Hardt, Price & Srebro 2016, relaxed to a tolerance) and
the test accuracies compared at the same tolerance. This uses the paper's own library, ``error-parity`` (its
``RelaxedThresholdOptimizer``); install it with the ``unprocessing`` extra.

error-parity's equalized-odds constraint at tolerance t is ‖(FPR_i, TPR_i) − (FPR_j, TPR_j)‖_∞ ≤ t for every
pair of groups (the default ``l_p_norm=inf``), i.e. max(max_a TPR_a − min_a TPR_a, max_a FPR_a − min_a FPR_a) ≤ t:
the same quantity as ``eod_max`` (docs/METRICS.md). It holds for the fitted (expected) ROC points on the fit
data; the realised randomised predictions differ from them by sampling noise, and on test data by the shift
between fit and test rows. Both are therefore measured with ``eod_max``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fairfacebench.metrics.fairness import _as_codes, confusion_counts, metrics_from_counts

TOLERANCES = (0.02, 0.05, 0.10)
# What accuracy at equal fairness does, shown wherever its numbers are (the leaderboard's notes).
EQUAL_FAIRNESS_NOTE = (
    "each run's scores post-processed to eod_max <= t with group-specific randomised thresholds (error-parity's "
    "RelaxedThresholdOptimizer; Cruz & Hardt, ICLR 2024), fitted on validation's selection half and applied to test: "
    "uses the sensitive attribute at inference; the constraint holds on the fit rows in expectation, so the achieved "
    "test eod_max is shown beside each accuracy"
)


def accuracy_at_equal_odds(
    fit_scores,
    fit_y,
    fit_a,
    test_scores,
    test_y,
    test_a,
    tolerances: Sequence[float] = TOLERANCES,
    seed: int = 0,
) -> list[dict]:
    """Test accuracy and achieved eod_max of the scores post-processed to equalized odds at each tolerance.

    For each tolerance t, error-parity's RelaxedThresholdOptimizer (constraint "equalized_odds", l-inf, 0-1 loss)
    is fitted on (fit_scores[:, 1], fit_y, fit_a) and predicts test_scores[:, 1] with test_a. Binary targets only;
    scores are (N, 2) probabilities (a stored ``val_scores`` / ``test_scores``). Returns one dict per tolerance:
    tolerance, test_acc, test_eod_max, fit_acc, fit_eod_max (realised on the fit rows) and fit_violation
    (the optimiser's theoretical l-inf violation).

    Uses the sensitive attribute at inference: each test row's group picks its thresholds. The randomisation is
    seeded (``seed``), so the same inputs give the same numbers.
    """
    try:
        from error_parity import RelaxedThresholdOptimizer
    except ImportError as exc:
        raise ImportError(
            "accuracy at equal fairness needs the error-parity package: pip install 'fairfacebench[unprocessing]'"
        ) from exc

    fit_scores, fit_y, fit_a = _checked(fit_scores, fit_y, fit_a, "fit")
    test_scores, test_y, test_a = _checked(test_scores, test_y, test_a, "test")
    n_groups = int(max(fit_a.max(), test_a.max())) + 1
    missing = sorted(set(range(n_groups)) - set(np.unique(fit_a).tolist()))
    if missing:
        raise ValueError(
            f"group code(s) {missing} have no fit rows: thresholds cannot be fitted for them; "
            "fit on data holding every group (or drop those groups from test)"
        )
    results = []
    for tolerance in tolerances:
        if not 0 <= tolerance <= 1:
            raise ValueError(f"tolerance must be in [0, 1]; got {tolerance}")
        optimizer = RelaxedThresholdOptimizer(
            predictor=_positive_score, constraint="equalized_odds", tolerance=float(tolerance), seed=seed
        )
        optimizer.fit(X=fit_scores, y=fit_y, group=fit_a)
        test_pred = _seeded_predict(optimizer, test_scores, test_a, seed)
        fit_pred = _seeded_predict(optimizer, fit_scores, fit_a, seed)
        fit = metrics_from_counts(confusion_counts(fit_y, fit_pred, fit_a, n_groups))
        test = metrics_from_counts(confusion_counts(test_y, test_pred, test_a, n_groups))
        results.append(
            {
                "tolerance": float(tolerance),
                "test_acc": test["acc"],
                "test_eod_max": test["eod_max"],
                "fit_acc": fit["acc"],
                "fit_eod_max": fit["eod_max"],
                "fit_violation": float(optimizer.equalized_odds_violation()),
            }
        )
    return results


def rows_by_id(ids, reference_ids, *columns) -> tuple[np.ndarray, ...]:
    """``columns`` (aligned with ``reference_ids``) reordered to follow ``ids``, e.g. the labels and groups of a
    stored ``val_ids`` taken from the dataset's validation split; a ValueError names ids not in the reference."""
    ids, reference_ids = np.asarray(ids).astype(str), np.asarray(reference_ids).astype(str)
    position = {k: i for i, k in enumerate(reference_ids)}
    if len(position) != len(reference_ids):
        raise ValueError("reference_ids holds duplicate ids: rows cannot be matched by id")
    unknown = [str(k) for k in ids if k not in position]
    if unknown:
        raise ValueError(f"{len(unknown)} id(s) not in the reference, e.g. {unknown[:3]}: wrong split or dataset?")
    index = np.array([position[k] for k in ids], dtype=np.int64)
    return tuple(np.asarray(c)[index] for c in columns)


def _positive_score(X: np.ndarray) -> np.ndarray:
    """The 'model' error-parity post-processes: X is the (N, 2) score array, its output the P(Y=1) column."""
    return np.asarray(X)[:, 1]


def _seeded_predict(optimizer, scores: np.ndarray, groups: np.ndarray, seed: int) -> np.ndarray:
    """Predictions with every random draw seeded.

    error-parity draws from its own seeded generator, but for a target ROC point inside the hull it also calls
    the global ``np.random``: that state is seeded here and restored afterwards.
    """
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        return np.asarray(optimizer.predict(scores, group=groups), dtype=np.int64)
    finally:
        np.random.set_state(state)


def _checked(scores, y, groups, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 2) probabilities, binary labels and group codes of one split, or a ValueError naming the split."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[1] != 2:
        raise ValueError(
            f"{split} scores must be (N, 2) probabilities of a binary target; got shape {scores.shape} "
            "(error-parity post-processes binary classifiers only)"
        )
    y = _as_codes(y, f"{split} y", 2, "2 classes")
    groups = np.asarray(groups)
    groups = _as_codes(groups, f"{split} groups", int(groups.max()) + 1 if groups.size else 1, "the group count")
    if not len(scores) == len(y) == len(groups):
        raise ValueError(f"{split} scores, y and groups have {len(scores)}, {len(y)}, {len(groups)} rows")
    return scores, y, groups
