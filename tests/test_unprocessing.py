"""Accuracy at equal fairness (Cruz & Hardt 2024) through error-parity, on synthetic scores with a known large gap."""

import math

import numpy as np
import pytest

from fairfacebench.metrics.fairness import confusion_counts, metrics_from_counts
from fairfacebench.metrics.unprocessing import accuracy_at_equal_odds, rows_by_id


def test_rows_by_id_follow_the_stored_order():
    y, a = rows_by_id(["c", "a"], ["a", "b", "c"], [10, 11, 12], [0, 1, 2])
    assert y.tolist() == [12, 10] and a.tolist() == [2, 0]
    with pytest.raises(ValueError, match="1 id\\(s\\) not in the reference, e.g. \\['z'\\]"):
        rows_by_id(["z"], ["a"], [1])


def synthetic(n: int, seed: int):
    """Balanced labels; group 1's scores are far noisier (logit noise sd 3 vs 0.7), so one threshold for both
    gives group 1 a much lower TPR and higher FPR, and equalizing them costs accuracy."""
    rng = np.random.default_rng(seed)
    a, y = rng.integers(0, 2, n), rng.integers(0, 2, n)
    logit = np.where(y == 1, 1.5, -1.5) + rng.normal(0, 1, n) * np.where(a == 1, 3.0, 0.7)
    p = 1 / (1 + np.exp(-logit))
    return np.c_[1 - p, p], y, a


@pytest.fixture
def error_parity():
    return pytest.importorskip("error_parity", reason="the 'unprocessing' extra (error-parity) is not installed")


def test_the_gap_closes_to_the_tolerance_and_accuracy_grows_with_it(error_parity):
    fit, test = synthetic(6000, 0), synthetic(6000, 1)
    unconstrained = metrics_from_counts(confusion_counts(test[1], test[0].argmax(1), test[2], 2))
    assert unconstrained["eod_max"] > 0.25  # the known large gap
    tolerances = (0.02, 0.05, 0.10)
    results = accuracy_at_equal_odds(*fit, *test, tolerances=tolerances, seed=0)
    assert [r["tolerance"] for r in results] == list(tolerances)
    # Realised randomised decisions scatter around the fitted ROC points: ~1,500 positives (and negatives) per
    # group on the fit rows, so 3 standard errors of a difference of two rates near 1/2 is
    # 3 · √(2 · 0.25 / 1500) = 0.055.
    slack = 3 * math.sqrt(2 * 0.25 / 1500)
    for r in results:
        assert r["fit_violation"] <= r["tolerance"] + 1e-6
        assert r["fit_eod_max"] <= r["tolerance"] + slack, r
        assert r["test_eod_max"] < unconstrained["eod_max"] / 2, r
    # A looser constraint can only help on the fit rows (up to the same noise in accuracy, ±0.01 here).
    for looser, tighter in zip(results[1:], results):
        assert looser["fit_acc"] >= tighter["fit_acc"] - 0.01 and looser["test_acc"] >= tighter["test_acc"] - 0.01
    assert results[-1]["test_acc"] > results[0]["test_acc"]
    assert accuracy_at_equal_odds(*fit, *test, tolerances=tolerances, seed=0) == results  # seeded


def test_inputs_are_checked(error_parity):
    scores, y, a = synthetic(200, 0)
    with pytest.raises(ValueError, match="group code\\(s\\) \\[1\\] have no fit rows"):
        accuracy_at_equal_odds(scores[a == 0], y[a == 0], a[a == 0], scores, y, a, tolerances=(0.05,))
    with pytest.raises(ValueError, match="binary target"):
        accuracy_at_equal_odds(np.full((200, 3), 1 / 3), y, a, scores, y, a)
