"""Calibration per group: ECE, Brier score, reliability bins; hand-checked and cross-checked with torchmetrics and
scikit-learn."""

import json

import numpy as np
import pytest

from fairfacebench.metrics.calibration import (
    brier_score,
    calibration_by_group,
    expected_calibration_error,
    reliability_bins,
)

SCORES = np.array([[0.1, 0.9], [0.3, 0.7], [0.65, 0.35], [0.45, 0.55], [0.0, 1.0]])
Y = np.array([1, 0, 0, 1, 1])
GROUPS = np.array([0, 0, 0, 1, 1])


def test_ece_and_reliability_bins_by_hand():
    # 5 bins ((m-1)/5, m/5]. Confidences .9 (right), .7 (wrong: predicts 1, y = 0), .65 (right), .55 (right),
    # 1.0 (right, in the last bin: bins are closed on the right).
    # bin (.4,.6]: 1 row, conf .55, acc 1 -> |gap| .45; bin (.6,.8]: 2 rows, conf .675, acc .5 -> .175;
    # bin (.8,1]: 2 rows, conf .95, acc 1 -> .05.  ECE = (1·.45 + 2·.175 + 2·.05) / 5 = 0.18
    bins = reliability_bins(SCORES, Y, n_bins=5)
    assert bins["count"].tolist() == [0, 0, 1, 2, 2]
    np.testing.assert_allclose(bins["confidence"], [np.nan, np.nan, 0.55, 0.675, 0.95])
    np.testing.assert_allclose(bins["accuracy"], [np.nan, np.nan, 1.0, 0.5, 1.0])
    np.testing.assert_allclose(bins["lower"], [0, 0.2, 0.4, 0.6, 0.8])
    assert expected_calibration_error(SCORES, Y, n_bins=5) == pytest.approx(0.18)


def test_brier_by_hand():
    # (.9-1)² + (.7-0)² + (.35-0)² + (.55-1)² + (1-1)² = .01 + .49 + .1225 + .2025 + 0 = .825; / 5 = 0.165
    assert brier_score(SCORES, Y) == pytest.approx(0.165)
    # three classes: row [.2, .5, .3] with y = 1: .04 + .25 + .09 = .38; row [1, 0, 0] with y = 0: 0 -> mean 0.19
    assert brier_score([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]], [1, 0]) == pytest.approx(0.19)


def test_calibration_by_group_by_hand():
    out = calibration_by_group(SCORES, Y, GROUPS, ["a", "b"], n_bins=5)
    a, b = out["per_group"]
    # group a (rows 1-3): bin (.8,1] conf .9 acc 1 -> .1; bin (.6,.8] 2 rows -> .175 each: (.1 + .35) / 3 = 0.15
    #   Brier (.01 + .49 + .1225) / 3 = 0.2075
    # group b (rows 4-5): .45 and 0 -> ECE .225; Brier (.2025 + 0) / 2 = 0.10125
    assert (a["n"], b["n"]) == (3, 2)
    assert a["ece"] == pytest.approx(0.15) and b["ece"] == pytest.approx(0.225)
    assert a["brier"] == pytest.approx(0.2075) and b["brier"] == pytest.approx(0.10125)
    assert out["summary"] == pytest.approx(
        {"ece_max": 0.225, "ece_gap": 0.075, "brier_max": 0.2075, "brier_gap": 0.10625}
    )
    assert out["overall"] == pytest.approx({"ece": 0.18, "brier": 0.165})
    assert a["reliability"][3] == pytest.approx(
        {"lower": 0.6, "upper": 0.8, "count": 2, "confidence": 0.675, "accuracy": 0.5}
    )
    assert b["reliability"][0]["confidence"] is None  # empty bin
    json.dumps(out, allow_nan=False)


def test_a_group_without_rows_is_left_out_of_the_gap():
    out = calibration_by_group(SCORES, Y, GROUPS, ["a", "b", "empty"], n_bins=5)
    assert out["per_group"][2]["n"] == 0 and out["per_group"][2]["ece"] is None
    assert out["summary"]["ece_gap"] == pytest.approx(0.075)


@pytest.mark.parametrize("n_classes, n_bins", [(2, 15), (3, 15), (5, 10)])
def test_ece_and_brier_agree_with_torchmetrics_and_sklearn(n_classes, n_bins):
    torch = pytest.importorskip("torch")
    calibration_error = pytest.importorskip("torchmetrics.functional.classification").multiclass_calibration_error
    from sklearn.metrics import brier_score_loss

    rng = np.random.default_rng(n_classes)
    scores = rng.dirichlet(np.full(n_classes, 0.7), size=3000)
    y = np.array([rng.choice(n_classes, p=p) for p in scores**1.5 / (scores**1.5).sum(1, keepdims=True)])
    reference = calibration_error(
        torch.tensor(scores), torch.tensor(y), num_classes=n_classes, n_bins=n_bins, norm="l1"
    ).item()
    # torchmetrics bins and averages in float32: agreement to float32 precision
    assert expected_calibration_error(scores, y, n_bins) == pytest.approx(reference, abs=1e-6)
    sklearn_brier = brier_score_loss(y, scores[:, 1] if n_classes == 2 else scores, labels=list(range(n_classes)))
    assert brier_score(scores, y) == pytest.approx(sklearn_brier, abs=1e-12)


def test_bad_scores_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        brier_score([[2.0, -1.0]], [0])
    with pytest.raises(ValueError, match="\\(N, C\\)"):
        expected_calibration_error([0.3, 0.7], [1, 0])
    with pytest.raises(ValueError, match="y_true has 1 entries but scores have 2 rows"):
        brier_score([[0.5, 0.5], [0.5, 0.5]], [1])
