"""Two-level bootstrap over seeds and test rows, hand-checked on fixed draws."""

import numpy as np
import pytest

from fairfacebench.metrics.fairness import confusion_counts
from fairfacebench.metrics.hierarchical import (
    bootstrap_p_value,
    counts_from_predictions,
    hierarchical_mean,
    hierarchical_paired_difference,
    paired_counts,
    paired_counts_from_predictions,
    paired_two_level_replicates,
    percentile_interval,
    two_level_draws,
    two_level_replicates,
)


def counts(group0, group1):
    return np.array([group0, group1])


def test_two_level_replicates_by_hand_on_a_fixed_draw():
    # counts[g, y, ŷ]; TPR of a group = counts[g, 1, 1] / row sum of counts[g, 1].
    r1 = counts([[2, 1], [1, 2]], [[1, 0], [0, 1]])  # acc 6/8; TPR 2/3 and 1 -> eopp_diff 1/3
    r2 = counts([[3, 0], [0, 1]], [[1, 1], [1, 1]])  # acc 6/8; TPR 1 and 1/2 -> eopp_diff 1/2
    r3 = counts([[1, 0], [2, 1]], [[2, 0], [0, 3]])  # acc 7/9; TPR 1/3 and 1 -> eopp_diff 2/3
    r4 = counts([[0, 0], [0, 4]], [[0, 0], [0, 0]])  # acc 4/4; group 1 has no positives -> eopp_diff undefined
    out = two_level_replicates(np.array([[r1, r2], [r3, r4]]))
    # replicate 0: acc (6/8 + 6/8) / 2 = 0.75, eopp_diff (1/3 + 1/2) / 2 = 5/12
    # replicate 1: acc (7/9 + 1) / 2 = 8/9, eopp_diff 2/3 (r4 left out)
    np.testing.assert_allclose(out["acc"], [0.75, 8 / 9])
    np.testing.assert_allclose(out["eopp_diff"], [5 / 12, 2 / 3])


def test_paired_replicates_by_hand_on_a_fixed_draw():
    # One group; joint[y, ŷ_A, ŷ_B].
    # seed draw 1: y=0 [[2, 1], [0, 1]], y=1 [[0, 1], [1, 2]]
    #   A right: y=0 and ŷ_A=0: 2+1 = 3; y=1 and ŷ_A=1: 1+2 = 3 -> 6/8
    #   B right: y=0 and ŷ_B=0: 2+0 = 2; y=1 and ŷ_B=1: 1+2 = 3 -> 5/8; A − B = 1/8
    # seed draw 2: y=0 [[1, 0], [0, 0]], y=1 [[0, 0], [1, 0]] -> A 2/2, B 1/2; A − B = 1/2
    j1 = np.array([[[[2, 1], [0, 1]], [[0, 1], [1, 2]]]])
    j2 = np.array([[[[1, 0], [0, 0]], [[0, 0], [1, 0]]]])
    out = paired_two_level_replicates(np.array([[j1, j2]]))
    assert out["acc"][0] == pytest.approx((1 / 8 + 1 / 2) / 2)  # 5/16


def test_paired_counts_marginals_are_each_methods_counts():
    rng = np.random.default_rng(0)
    y, a = rng.integers(0, 3, 200), rng.integers(0, 2, 200)
    pred_a, pred_b = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    joint = paired_counts(y, pred_a, pred_b, a, 2, 3)
    assert joint.shape == (2, 3, 3, 3) and joint.sum() == 200
    np.testing.assert_array_equal(joint.sum(-1), confusion_counts(y, pred_a, a, 2, 3))
    np.testing.assert_array_equal(joint.sum(-2), confusion_counts(y, pred_b, a, 2, 3))


def test_two_level_draws_resample_seeds_then_rows():
    per_seed = [counts([[5, 1], [2, 4]], [[3, 0], [1, 2]]), counts([[10, 0], [0, 10]], [[0, 0], [0, 5]])]
    index, resampled = two_level_draws(per_seed, n_resamples=50, seed=1)
    assert index.shape == (50, 2) and resampled.shape == (50, 2, 2, 2, 2)
    totals = np.array([c.sum() for c in per_seed])
    np.testing.assert_array_equal(resampled.sum(axis=(2, 3, 4)), totals[index])  # each draw keeps its seed's n
    assert not np.array_equal(resampled, np.array(per_seed)[index])  # rows were resampled
    index, fixed = two_level_draws(per_seed, n_resamples=50, seed=1, resample_rows=False)
    np.testing.assert_array_equal(fixed, np.array(per_seed)[index])
    with pytest.raises(ValueError, match="same shape"):
        two_level_draws([per_seed[0], per_seed[0][:1]], 10)


def test_p_value_and_interval_by_hand():
    # 4 replicates -0.1, 0.2, 0.3, 0.4: one ≤ 0, three ≥ 0 -> 2 · (1 + 1) / (4 + 1) = 0.8
    assert bootstrap_p_value([-0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.8)
    # all 9 above 0 -> 2 · (1 + 0) / 10 = 0.2; all exactly 0 -> capped at 1
    assert bootstrap_p_value(np.linspace(0.1, 0.9, 9)) == pytest.approx(0.2) and bootstrap_p_value([0, 0]) == 1.0
    # replicates 1..5, level 0.5: quantiles at 0.25, 0.75 -> 2, 4; estimate 1 is outside -> widened to [1, 4]
    out = percentile_interval([1, 2, 3, 4, 5], 1.0, level=0.5)
    assert out == {"interval": [1.0, 4.0], "widened_to_estimate": True, "bootstrap_bias": 2.0}


def stored(y, a, scores, ids=None):
    return {"test_y": y, "test_a": a, "test_scores": scores, "test_ids": np.arange(len(y)) if ids is None else ids}


def test_a_method_against_itself_and_against_a_worse_one():
    rng = np.random.default_rng(0)
    seeds = []
    for _ in range(3):
        y, a = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
        good = np.eye(2)[np.where(rng.random(300) < 0.9, y, 1 - y)]
        poor = np.eye(2)[np.where(rng.random(300) < 0.6, y, 1 - y)]
        seeds.append((stored(y, a, good), stored(y, a, poor)))
    same = hierarchical_paired_difference([paired_counts_from_predictions(g, g, 2, 2) for g, _ in seeds], 200)
    assert same["metrics"]["acc"]["difference"] == 0 and same["metrics"]["acc"]["interval"] == [0.0, 0.0]
    assert same["metrics"]["acc"]["p_value"] == 1.0
    versus = hierarchical_paired_difference([paired_counts_from_predictions(g, p, 2, 2) for g, p in seeds], 200)
    acc = versus["metrics"]["acc"]
    assert 0.2 < acc["difference"] < 0.4 and acc["interval"][0] > 0.2 and acc["p_value"] == pytest.approx(2 / 201)
    assert acc["mean_a"] - acc["mean_b"] == pytest.approx(acc["difference"])
    mean = hierarchical_mean([counts_from_predictions(g, 2, 2) for g, _ in seeds], 200)
    assert mean["metrics"]["acc"]["mean"] == pytest.approx(acc["mean_a"]) and mean["seeds"] == 3
    assert hierarchical_mean([counts_from_predictions(g, 2, 2) for g, _ in seeds], 200) == mean  # seeded


def test_paired_predictions_must_share_test_rows():
    y, a, scores = np.array([0, 1]), np.array([0, 1]), np.eye(2)
    with pytest.raises(ValueError, match="test_ids differ"):
        paired_counts_from_predictions(stored(y, a, scores), stored(y, a, scores, ids=np.array([1, 0])), 2, 2)
