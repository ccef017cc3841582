"""Within-run bootstrap intervals that hold their estimate: BCa and the sup-t projection, hand-checked."""

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fairfacebench.metrics.bootstrap import (
    BCA_METRICS,
    MIN_GROUP_ROWS,
    _jackknife,
    _multinomial_resamples,
    bca_interval,
    intervals_from_counts,
    range_interval,
    std_interval,
    sup_t_band,
)
from fairfacebench.metrics.fairness import METRIC_NAMES, confusion_counts, metrics_from_counts


def test_bca_interval_by_hand():
    # 10 replicates 1..10, estimate 5: 4 below, 1 tied -> p = (4 + 0.5) / 10 = 0.45, z0 = Φ⁻¹(0.45) = -0.125661.
    # Jackknife 1, 2, 3, 6 (weight 1 each): mean 3, d = 2, 1, 0, -3; Σd³ = -18, Σd² = 14
    #   -> a = -18 / (6 · 14^1.5) = -0.057270.
    # level 0.90, z = ∓1.644854:
    #   low:  z0 + z = -1.770515, 1 - a(z0 + z) = 0.898602, z0 + (-1.770515 / 0.898602) = -2.095960 -> α1 = 0.018043
    #   high: z0 + z = 1.519192, 1 - a(z0 + z) = 1.087005, z0 + 1.397590 = 1.271934 -> α2 = 0.898302
    # linear quantiles of 1..10 at α: 1 + 9α -> 1.162386 and 9.084715.
    low, high = bca_interval(5.0, np.arange(1, 11), [1, 2, 3, 6], [1, 1, 1, 1], level=0.90)
    assert low == pytest.approx(1.162386, abs=1e-6) and high == pytest.approx(9.084715, abs=1e-6)


def test_bca_without_skew_or_bias_is_the_percentile_interval():
    # Symmetric jackknife (a = 0) and the estimate at the replicates' median (z0 = 0): α = 0.05, 0.95.
    replicates = np.arange(1, 22, dtype=float)  # median 11
    low, high = bca_interval(11.0, replicates, [1, 2, 3], [1, 1, 1], level=0.90)
    assert [low, high] == pytest.approx(np.quantile(replicates, [0.05, 0.95]).tolist())


def test_jackknife_by_cells_equals_leaving_out_each_row():
    y_true, y_pred = np.array([1, 1, 0, 0, 1, 0, 1]), np.array([1, 0, 0, 1, 1, 0, 1])
    groups = np.array([0, 0, 0, 0, 1, 1, 1])
    counts = confusion_counts(y_true, y_pred, groups, 2)
    values, weights = _jackknife(counts)
    naive = [
        metrics_from_counts(confusion_counts(np.delete(y_true, i), np.delete(y_pred, i), np.delete(groups, i), 2))
        for i in range(len(y_true))
    ]
    for name in METRIC_NAMES:
        per_row = np.sort([m[name] for m in naive])
        per_cell = np.sort(np.repeat(values[name], weights.astype(int)))
        np.testing.assert_allclose(per_cell, per_row, equal_nan=True, err_msg=name)
    assert weights.sum() == len(y_true)


def test_sup_t_band_by_hand():
    # Coordinate stds over the 4 replicates: both sqrt(0.02 / 3) = 0.081650 (ddof=1).
    # max_k |θ* - θ̂| / s per replicate: 1.224745, 1.224745, 1.224745, 0; its 0.5 quantile is 1.224745 = √1.5,
    # so the half width is √1.5 · √(0.02/3) = 0.1.
    replicates = np.array([[0.4, 0.2], [0.6, 0.3], [0.5, 0.1], [0.5, 0.2]])
    band = sup_t_band([0.5, 0.2], replicates, level=0.5)
    assert band["c"] == pytest.approx(math.sqrt(1.5))
    np.testing.assert_allclose(band["low"], [0.4, 0.1]) and np.testing.assert_allclose(band["high"], [0.6, 0.3])
    # A constant coordinate has zero width and is flagged; one never defined gets the whole range.
    band = sup_t_band([0.5, 1.0, 0.3], np.c_[replicates[:, 0], np.ones(4), np.full(4, np.nan)], level=0.5)
    assert band["constant"].tolist() == [False, True, False] and band["never_defined"].tolist() == [False, False, True]
    assert band["low"][1] == band["high"][1] == 1.0 and [band["low"][2], band["high"][2]] == [0.0, 1.0]


def test_range_and_std_of_a_box_by_hand():
    # pair 1: d in [-0.05, 0.2] -> |d| in [0, 0.2]; pair 2: d in [0.1, 0.3] -> |d| in [0.1, 0.3]; max: [0.1, 0.3]
    assert range_interval([-0.05, 0.1], [0.2, 0.3]) == pytest.approx([0.1, 0.3])
    # a pair entirely below 0 counts by its absolute values: d in [-0.4, -0.25] -> |d| in [0.25, 0.4]
    assert range_interval([-0.4, np.nan], [-0.25, np.nan]) == pytest.approx([0.25, 0.4])
    # values 0.6, 0.8: std 0.1; box half widths 0.1, 0.1 -> radius √((0.01 + 0.01) / 2) = 0.1 -> [0, 0.2]
    assert std_interval(0.1, [0.5, 0.75], [0.7, 0.9], [0.6, 0.8]) == pytest.approx([0.0, 0.2])


def test_a_zero_gap_is_inside_its_interval_where_the_percentile_interval_excluded_it():
    # Two groups with identical TPR 40/50 and FPR 5/50: every gap is 0, and nearly every resample's gap is > 0.
    cell = np.array([[45, 5], [10, 40]])
    counts = np.stack([cell, cell])
    draws = metrics_from_counts(_multinomial_resamples(counts, 1000, seed=0))
    assert np.percentile(draws["eopp_diff"], 2.5) > 0  # the old percentile interval excluded the estimate 0
    result = intervals_from_counts(counts, n_resamples=1000, seed=0)
    for name in ("eopp_diff", "eod_max", "eod_mean", "dp_diff", "group_acc_std"):
        low, high = result["intervals"][name]
        assert low == 0.0 < high, name
    assert result["widened_to_estimate"] == [] and result["uninformative"] == {}


def test_coverage_of_a_zero_equal_opportunity_gap():
    # 100 simulated test sets of 400 rows from two groups with equal TPR 0.8 and FPR 0.1: the true eopp_diff is 0.
    # The projection interval must cover it about 95 % of the time; the percentile interval never does.
    rng = np.random.default_rng(0)
    covered = percentile_covered = 0
    for s in range(100):
        a, y = rng.integers(0, 2, 400), rng.integers(0, 2, 400)
        y_pred = (rng.random(400) < np.where(y == 1, 0.8, 0.1)).astype(int)
        counts = confusion_counts(y, y_pred, a, 2)
        covered += intervals_from_counts(counts, 500, seed=s)["intervals"]["eopp_diff"][0] == 0.0
        draws = metrics_from_counts(_multinomial_resamples(counts, 500, s))["eopp_diff"]
        percentile_covered += np.percentile(draws, 2.5) <= 0.0
    assert covered >= 88 and percentile_covered <= 5


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(2, 4).flatmap(
        lambda g: st.integers(2, 3).flatmap(
            lambda c: st.lists(st.integers(0, 6), min_size=g * c * c, max_size=g * c * c).map(
                lambda cells: np.array(cells).reshape(g, c, c)
            )
        )
    ),
    st.integers(0, 2**16),
)
def test_every_interval_holds_its_estimate_on_small_tables(counts, seed):
    if counts.sum() == 0:
        return
    estimate = metrics_from_counts(counts)
    result = intervals_from_counts(counts, n_resamples=200, seed=seed)
    # The projection intervals hold the estimate by construction; only BCa may ever need widening.
    assert set(result["widened_to_estimate"]) <= set(BCA_METRICS)
    for name in METRIC_NAMES:
        low, high = result["intervals"][name]
        if math.isnan(estimate[name]):
            assert low is None and high is None, name
        else:
            assert 0.0 <= low <= estimate[name] <= high <= 1.0, (name, low, estimate[name], high)


def test_small_groups_and_zero_width_are_flagged_uninformative():
    # Group a=1 has 4 positives (< 10); every prediction is right, so acc has no spread at all.
    counts = np.array([[[30, 0], [0, 30]], [[6, 0], [0, 4]]])
    result = intervals_from_counts(counts, n_resamples=200, group_names=["big", "small"])
    flags = result["uninformative"]
    assert MIN_GROUP_ROWS == 10
    assert flags["acc"] == "zero width" and result["intervals"]["acc"] == [1.0, 1.0]
    assert "small: 4 positives" in flags["eopp_diff"] and "small: 6 negatives" in flags["eod_max"]
    assert "TPR gap big vs small has no spread over the resamples" in flags["eopp_diff"]
    assert "dp_diff" not in flags  # 10 rows in group small: not below the threshold
    json.dumps(result, allow_nan=False)
