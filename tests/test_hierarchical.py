"""The crossed bootstrap over seeds and the shared test rows, hand-checked on fixed draws."""

import numpy as np
import pytest

from fairfacebench.metrics.bootstrap import intervals_from_counts
from fairfacebench.metrics.fairness import confusion_counts
from fairfacebench.metrics.hierarchical import (
    bootstrap_p_value,
    crossed_draws,
    crossed_mean,
    crossed_paired_difference,
    crossed_replicates,
    percentile_interval,
    seed_corrected_interval,
    seed_corrected_p_value,
    seed_correction,
    seed_predictions,
)

# four test rows: (y, group) = (0, 0), (1, 0), (0, 1), (1, 1)
Y, G = np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])


def test_crossed_replicates_by_hand_on_a_fixed_draw():
    seed0 = np.array([0, 1, 0, 1])  # all right
    seed1 = np.array([1, 1, 0, 0])  # rows 0 and 3 wrong
    index = np.array([[0, 1], [1, 1]])
    weights = np.array([[1.0, 1.0, 1.0, 1.0], [2.0, 0.0, 0.0, 2.0]])  # the data; rows 0 and 3 twice
    out = crossed_replicates(Y, G, [np.stack([seed0, seed1])], 2, 2, index, weights)
    # replicate 0: seed 0 acc 1, seed 1 acc 2/4 -> 0.75.  replicate 1: seed 1 twice on rows {0, 0, 3, 3}, all wrong
    np.testing.assert_allclose(out["acc"], [0.75, 0.0])
    # the same row weights apply to every drawn seed: replicate 1 drawing seed 0 instead would be all right
    out = crossed_replicates(Y, G, [np.stack([seed0, seed1])], 2, 2, np.array([[0, 0]]), weights[1:])
    np.testing.assert_allclose(out["acc"], [1.0])


def test_paired_replicates_by_hand_on_a_fixed_draw():
    a = np.array([[0, 1, 0, 1], [0, 1, 0, 0]])  # seed 0: 4/4 right; seed 1: 3/4
    b = np.array([[1, 1, 0, 1], [1, 0, 0, 0]])  # seed 0: 3/4 right; seed 1: 1/4
    index = np.array([[0, 1], [1, 1]])
    weights = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 4.0, 0.0, 0.0]])  # the data; row 1 four times
    out = crossed_replicates(Y, G, [a, b], 2, 2, index, weights)
    # replicate 0: (1 − 3/4 + 3/4 − 1/4) / 2 = 0.375; replicate 1: seed 1 on row 1 only: a right, b wrong -> 1
    np.testing.assert_allclose(out["acc"], [0.375, 1.0])


def test_crossed_draws_share_one_row_resample_per_replicate():
    index, weights = crossed_draws(n_seeds=3, n_rows=50, n_resamples=20, seed=1)
    assert index.shape == (20, 3) and index.max() < 3 and weights.shape == (20, 50)
    np.testing.assert_array_equal(weights.sum(1), 50)  # each replicate is a resample of the n rows
    assert not np.all(weights == 1)
    _, fixed = crossed_draws(3, 50, 20, seed=1, resample_rows=False)
    np.testing.assert_array_equal(fixed, 1)


def test_identical_seeds_keep_the_whole_test_set_uncertainty():
    # Five seeds with the same predictions: seeds add no spread, and the shared test set's sampling error does not
    # average out over them, so the interval is as wide as one run's row bootstrap (a nested bootstrap, drawing
    # rows independently per seed, would shrink it by about √5).
    rng = np.random.default_rng(0)
    y, g = rng.integers(0, 2, 400), rng.integers(0, 2, 400)
    pred = np.where(rng.random(400) < 0.8, y, 1 - y)
    crossed = crossed_mean(y, g, np.stack([pred] * 5), 2, 2, n_resamples=1000)["metrics"]["acc"]
    single = intervals_from_counts(confusion_counts(y, pred, g, 2, 2), n_resamples=1000, seed=0)
    width = np.diff(crossed["interval"])[0]
    assert width == pytest.approx(np.diff(single["intervals"]["acc"])[0], rel=0.15)
    assert crossed["mean"] == pytest.approx(np.mean(pred == y))
    held = crossed_mean(y, g, np.stack([pred] * 5), 2, 2, n_resamples=200, resample_rows=False)
    assert held["metrics"]["acc"]["interval"] == [pytest.approx(np.mean(pred == y))] * 2


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
    y, a = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    good = [stored(y, a, np.eye(2)[np.where(rng.random(300) < 0.9, y, 1 - y)]) for _ in range(3)]
    poor = [stored(y, a, np.eye(2)[np.where(rng.random(300) < 0.6, y, 1 - y)]) for _ in range(3)]
    y_, g_, p_good = seed_predictions(good, 2)
    _, _, p_poor = seed_predictions(poor, 2)
    same = crossed_paired_difference(y_, g_, p_good, p_good, 2, 2, n_resamples=200)["metrics"]["acc"]
    assert same["difference"] == 0 and same["interval"] == [0.0, 0.0] and same["p_value"] == 1.0
    acc = crossed_paired_difference(y_, g_, p_good, p_poor, 2, 2, n_resamples=200)["metrics"]["acc"]
    assert 0.2 < acc["difference"] < 0.4 and acc["interval"][0] > 0.2 and acc["p_value"] == pytest.approx(2 / 201)
    assert acc["mean_a"] - acc["mean_b"] == pytest.approx(acc["difference"])
    mean = crossed_mean(y_, g_, p_good, 2, 2, n_resamples=200)
    assert mean["metrics"]["acc"]["mean"] == pytest.approx(acc["mean_a"]) and mean["seeds"] == 3
    assert crossed_mean(y_, g_, p_good, 2, 2, n_resamples=200) == mean  # seeded
    with pytest.raises(ValueError, match="seeds, rows"):
        crossed_paired_difference(y_, g_, p_good, p_poor[:2], 2, 2)


def test_seeds_must_share_their_test_rows():
    y, a, scores = np.array([0, 1]), np.array([0, 1]), np.eye(2)
    with pytest.raises(ValueError, match="test_ids differ"):
        seed_predictions([stored(y, a, scores), stored(y, a, scores, ids=np.array([1, 0]))], 2)
    with pytest.raises(ValueError, match="no seeds"):
        seed_predictions([], 2)


def test_several_classes_and_groups_estimate_the_mean_of_the_per_seed_metrics():
    from fairfacebench.metrics.fairness import compute_metrics

    rng = np.random.default_rng(3)
    y, g = rng.integers(0, 3, 500), rng.integers(0, 4, 500)
    predictions = np.stack([np.where(rng.random(500) < 0.7, y, rng.integers(0, 3, 500)) for _ in range(4)])
    out = crossed_mean(y, g, predictions, 4, 3, n_resamples=50)["metrics"]
    for name in ("acc", "eod_max", "wga"):
        per_seed = [compute_metrics(y, p, g, ["a", "b", "c", "d"], 3).summary[name] for p in predictions]
        assert out[name]["mean"] == pytest.approx(np.mean(per_seed))
        assert out[name]["interval"][0] <= out[name]["mean"] <= out[name]["interval"][1]


def test_seed_correction_by_hand():
    # replicates ±0.1 around 0.2 (variance v* = 0.01); seeds 0.1, 0.2, 0.3: var ddof=0 0.02/3, ddof=1 0.01
    #   v_seeds = 0.01/3 = 0.003333, v_rows = 0.01 − (0.02/3)/3 = 0.007778, v = 0.011111
    #   df = v² · 2 / v_seeds² = 22.22;  scale = √(v/v*) · t_22.22(0.975) / z(0.975) = 1.05409 · 2.07281 / 1.95996
    replicates = np.array([0.1, 0.3] * 50)
    out = seed_correction(replicates, [0.1, 0.2, 0.3])
    assert out["df"] == pytest.approx(22.222, rel=1e-4)
    assert out["scale"] == pytest.approx(1.05409 * 2.07281 / 1.95996, rel=1e-4)
    interval = seed_corrected_interval(replicates, 0.2, [0.1, 0.2, 0.3], level=0.95)
    assert interval["percentile_interval"] == [0.1, 0.3]
    assert interval["interval"] == pytest.approx([0.2 - 0.1 * out["scale"], 0.2 + 0.1 * out["scale"]])
    # clipped to the statistic's range
    assert seed_corrected_interval(replicates, 0.2, [0.1, 0.2, 0.3], bounds=(0.15, 0.25))["interval"] == [0.15, 0.25]
    # nothing to correct: seeds that agree, one seed, replicates that do not vary
    for per_seed in ([0.2, 0.2, 0.2], [0.2], [np.nan, 0.1]):
        assert seed_correction(replicates, per_seed) == {"scale": 1.0, "df": np.inf}
    assert seed_correction([0.2] * 10, [0.1, 0.3]) == {"scale": 1.0, "df": np.inf}


def test_the_scale_is_the_t_and_normal_quantiles_of_scipy_stats_bit_for_bit():
    # _scale reads scipy.special's quantiles (fast: thousands of calls per board); they are what scipy.stats returns
    from scipy import stats

    from fairfacebench.metrics.hierarchical import _scale

    for ratio in (0.5, 1.0, 1.7):
        for df in (0.7, 2.0, 3.5, 22.22, 400.0, np.inf):
            for level in (0.5, 0.9, 0.95, 0.999):
                q = (1 + level) / 2
                expected = max(np.sqrt(ratio) * float(stats.t.ppf(q, df)) / float(stats.norm.ppf(q)), 1.0)
                if np.isinf(df) and ratio == 1.0:
                    expected = 1.0  # nothing to correct: exactly 1, not t_inf / z rounded
                assert _scale(ratio, df, level) == expected, (ratio, df, level)


def test_the_corrected_interval_is_a_t_interval_when_the_seeds_are_all_the_spread():
    # Test rows held fixed: the bootstrap varies seeds only, v_rows ≈ 0, df ≈ S − 1, and the corrected interval
    # is close to the textbook mean ± t_{S−1} · sd/√S (the bootstrap's percentile one is about 40% narrower).
    from scipy import stats

    rng = np.random.default_rng(0)
    y, g = rng.integers(0, 2, 2000), rng.integers(0, 2, 2000)
    rates = [0.70, 0.76, 0.80, 0.84, 0.90]
    predictions = np.stack([np.where(rng.random(2000) < r, y, 1 - y) for r in rates])
    acc = crossed_mean(y, g, predictions, 2, 2, n_resamples=4000, resample_rows=False)["metrics"]["acc"]
    per_seed = (predictions == y).mean(axis=1)
    half = stats.t.ppf(0.975, 4) * per_seed.std(ddof=1) / np.sqrt(5)
    assert acc["seed_correction"]["df"] == pytest.approx(4, rel=0.1)
    assert acc["interval"] == pytest.approx([per_seed.mean() - half, per_seed.mean() + half], abs=0.1 * half)
    assert np.diff(acc["percentile_interval"])[0] < 0.7 * 2 * half


def test_the_corrected_p_value_agrees_with_the_corrected_interval():
    rng = np.random.default_rng(1)
    replicates = rng.normal(0.05, 0.02, 1000)
    # no seed spread: the percentile p-value (bootstrap_p_value) up to its +1s
    assert seed_corrected_p_value(replicates, 0.05, [0.05] * 5) == pytest.approx(
        bootstrap_p_value(replicates), abs=0.006
    )
    for per_seed in ([0.0, 0.02, 0.05, 0.08, 0.1], [0.03, 0.05, 0.07], [-0.05, 0.05, 0.15]):
        p = seed_corrected_p_value(replicates, 0.05, per_seed)
        for level in (0.9, 0.95, 0.99):
            low, _ = seed_corrected_interval(replicates, 0.05, per_seed, level)["interval"]
            assert (low > 0) == (p < 1 - level)
    # wider seeds, larger p; never below the Monte Carlo resolution
    assert seed_corrected_p_value(replicates, 0.05, [-0.05, 0.05, 0.15]) > seed_corrected_p_value(
        replicates, 0.05, [0.03, 0.05, 0.07]
    )
    assert seed_corrected_p_value(rng.normal(5, 0.01, 100), 5.0, [4.9, 5.1]) >= 2 / 101


def test_crossed_draws_are_memoised_read_only_and_the_same_as_drawn_afresh():
    index, weights = crossed_draws(3, 50, 20, 7)
    again = crossed_draws(3, 50, 20, 7)
    assert again[0] is index and again[1] is weights  # drawn once
    assert not index.flags.writeable and not weights.flags.writeable
    fresh_index, fresh_weights = crossed_draws.__wrapped__(3, 50, 20, 7)
    assert np.array_equal(index, fresh_index) and np.array_equal(weights, fresh_weights)
    with pytest.raises(ValueError, match="read-only"):
        weights[0, 0] = 5.0


def test_weighted_counts_are_each_seeds_row_weights_summed_per_cell():
    from fairfacebench.metrics.hierarchical import weighted_counts

    # by hand: 2 seeds, 3 rows, 3 cells; row 2 moves between seeds, row 1 is in cell 2 under both
    cells = np.array([[0, 2, 1], [0, 2, 0]])
    weights = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 2.0]])
    expected = np.array([[[1, 3, 2], [4, 0, 2]], [[0, 2, 1], [2, 0, 1]]], dtype=float)
    np.testing.assert_array_equal(weighted_counts(cells, weights, 3), expected)
    # against one sum per seed, on seeds that disagree on about a tenth of the rows (every row's cell a draw)
    rng = np.random.default_rng(3)
    base = rng.integers(0, 16, 500)
    cells = np.where(rng.random((5, 500)) < 0.1, rng.integers(0, 16, (5, 500)), base[None])
    weights = rng.multinomial(500, np.full(500, 1 / 500), size=40).astype(float)
    naive = np.stack([[np.bincount(c, w, minlength=16) for c in cells] for w in weights])
    np.testing.assert_array_equal(weighted_counts(cells, weights, 16), naive)
