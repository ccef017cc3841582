"""Statistics across seeds, hand-checked: paired differences, ranks with ties, the critical difference, clipping,
and the degenerate and at-chance flags."""

import math

import numpy as np
import pytest
from records import fake_record
from scipy.stats import kendalltau

from fairfacebench.flags import Flag, chance_flag, degenerate, run_flags
from fairfacebench.leaderboard.model import ABLATION_METRICS
from fairfacebench.leaderboard.tables import build
from fairfacebench.metrics.compare import (
    block_ranks,
    clip_interval,
    critical_difference,
    kendall_tau,
    mean_ranks,
    order_by_mean,
    paired_difference,
    t_interval,
)
from fairfacebench.record import migrate, parse_record
from fairfacebench.store import ResultStore
from fairfacebench.typed import to_plain


def test_paired_difference_uses_only_shared_seeds_and_a_t_interval():
    method = {0: 0.80, 1: 0.85, 2: 0.83, 3: 0.90}
    erm = {0: 0.78, 1: 0.80, 2: 0.82}  # seed 3 missing: not paired
    out = paired_difference(method, erm)
    # differences 0.02, 0.05, 0.01: mean 0.02667, std 0.02082, t_{0.975,2} = 4.3027 -> half width 0.05172
    assert out["seeds"] == [0, 1, 2] and out["n"] == 3
    assert out["mean"] == pytest.approx(0.026667, abs=1e-5) and out["std"] == pytest.approx(0.020817, abs=1e-5)
    assert out["ci95"] == [pytest.approx(0.026667 - 0.05172, abs=1e-4), pytest.approx(0.026667 + 0.05172, abs=1e-4)]


def test_t_interval_hand_checked_on_three_values_leaving_undefined_ones_out():
    out = t_interval([1.0, None, 2.0, float("nan"), 3.0])
    # mean 2; squared deviations 1 + 0 + 1 = 2, / (3 - 1) -> std 1;
    # t_{0.975, df=2} = 4.302653 (t table) -> half width 4.302653 / sqrt(3) = 2.484138.
    assert out["mean"] == 2.0 and out["std"] == 1.0 and out["n"] == 3
    assert out["ci95"] == pytest.approx([2 - 2.484138, 2 + 2.484138], abs=1e-6)


def test_t_interval_of_one_value_has_no_spread():
    out = t_interval([0.7])
    assert out["mean"] == 0.7 and out["std"] is None and out["ci95"] == [None, None]


def test_block_ranks_share_ties_and_respect_direction():
    np.testing.assert_array_equal(block_ranks(np.array([0.9, 0.7, 0.9, 0.5]), higher_is_better=True), [1.5, 3, 1.5, 4])
    np.testing.assert_array_equal(block_ranks(np.array([0.1, 0.3, 0.2]), higher_is_better=False), [1, 3, 2])
    np.testing.assert_array_equal(block_ranks(np.array([0.1, np.nan, 0.2]), higher_is_better=True), [2, 3, 1])
    ranks = mean_ranks([(np.array([0.9, 0.8]), True), (np.array([0.1, 0.3]), False), (np.array([0.5, 0.6]), True)])
    np.testing.assert_allclose(ranks, [(1 + 1 + 2) / 3, (2 + 2 + 1) / 3])


def test_nemenyi_critical_difference_matches_demsar():
    # Demšar 2006, Sec. 3.2.2 example: k = 4 classifiers, N = 14 data sets, q_0.05 = 2.569 -> CD = 1.25
    assert critical_difference(4, 14) == pytest.approx(1.25, abs=0.01)
    assert math.isnan(critical_difference(1, 5))


def test_bounded_intervals_are_clipped_to_their_range():
    assert clip_interval([-0.2, 0.4]) == [0.0, 0.4] and clip_interval([0.9, 1.3]) == [0.9, 1.0]
    assert clip_interval([None, 0.5]) == [None, 0.5] and clip_interval(None) is None


def group(name, rate):
    return {"group": name, "n": 10, "selection_rate": rate}


def test_degenerate_predictors_are_named():
    assert degenerate(fake_record(groups=[group("a", 0.0), group("b", 0.0)])) == ["one class for everyone"]
    assert degenerate(fake_record(groups=[group("a", 1.0), group("b", 0.4)])) == ["one class for all of group a"]
    assert degenerate(fake_record(groups=[group("a", 0.3), group("b", 0.6)])) == []


def test_accuracy_at_the_majority_rate_is_flagged_at_chance_and_near_chance():
    # 400 test images, 200 positives: majority rate 0.5, standard error sqrt(0.25 / 400) = 0.025;
    # at chance below 0.5 + 2 * 0.025 = 0.55, near chance below 0.5 + 4 * 0.025 = 0.60
    groups = [{"group": "a", "n": 200, "positives": 100}, {"group": "b", "n": 200, "positives": 100}]
    assert chance_flag(0.549, groups) == Flag(
        "at-chance", "test accuracy 0.549 below 0.550 (majority class 0.500 + 2 standard errors of 400 test rows)"
    )
    assert chance_flag(0.551, groups).code == "near-chance" and chance_flag(0.599, groups).code == "near-chance"
    assert chance_flag(0.601, groups) is None
    # majority 0.75 (300 of 400 negative): se = sqrt(0.75 * 0.25 / 400) = 0.02165, thresholds 0.7933 and 0.8366
    skewed = [{"group": "a", "n": 200, "positives": 50}, {"group": "b", "n": 200, "positives": 50}]
    assert chance_flag(0.79, skewed).code == "at-chance" and chance_flag(0.80, skewed).code == "near-chance"
    assert chance_flag(0.84, skewed) is None
    assert chance_flag(None, groups) is None and chance_flag(0.5, [{"group": "a", "n": 10}]) is None


def test_shasam_at_0526_on_2000_rows_is_near_chance_not_at_chance():
    # the demonstration board's shasam: 2,000 balanced test rows, se = sqrt(0.25 / 2000) = 0.01118;
    # at chance below 0.5224, near chance below 0.5447: 0.526 is near chance
    groups = [{"group": "a", "n": 1000, "positives": 500}, {"group": "b", "n": 1000, "positives": 500}]
    assert chance_flag(0.526, groups) == Flag(
        "near-chance", "test accuracy 0.526 below 0.545 (majority class 0.500 + 4 standard errors of 2000 test rows)"
    )
    record = fake_record(test={"acc": 0.52}, groups=[{**g, "selection_rate": 0.4} for g in groups])
    assert [f.code for f in run_flags(record, None)] == ["at-chance"]


def store_of(tmp_path, methods):
    """A store with one run per (method, seed): test accuracy per seed, every other compared metric 0.1."""
    store = ResultStore(tmp_path)
    for method, accs, ablates in methods:
        for seed, acc in enumerate(accs):
            test = {**dict.fromkeys(ABLATION_METRICS, 0.1), "acc": acc}
            store.write(f"{method}-{seed}", fake_record(method, seed, test=test, ablation_of=ablates))
    return tmp_path


def test_each_system_is_paired_with_its_own_ablations_only(tmp_path):
    store = store_of(
        tmp_path,
        [
            ("erm", [0.80, 0.80, 0.80], None),
            ("sys", [0.90, 0.86, 0.88], None),
            ("sys:no-x", [0.85, 0.85, 0.85], "sys"),
            ("other:no-y", [0.70, 0.70, 0.70], "other"),  # its system is not in the table
        ],
    )
    rows = {r.method: r for r in build(store).tables[0].rows}
    # sys − sys:no-x per seed: 0.05, 0.01, 0.03 -> mean 0.03 (system minus ablation, not the reverse)
    assert rows["sys:no-x"].system_vs_ablation["acc"].mean == pytest.approx(0.03)
    assert rows["sys:no-x"].system_vs_ablation["acc"].seeds == [0, 1, 2]
    assert rows["sys:no-x"].system_vs_ablation["cell_acc_std"].mean == pytest.approx(0.0)
    assert rows["other:no-y"].system_vs_ablation is None
    assert rows["sys"].system_vs_ablation is None and rows["erm"].system_vs_ablation is None
    assert rows["sys"].vs_erm["acc"].mean == pytest.approx(0.08) and rows["erm"].vs_erm is None


def test_the_ablated_system_is_the_recorded_one_or_for_old_records_the_name_before_the_colon():
    def ablates(name, **info):
        """The system a schema-1 record (no "schema" field) of method `name` ablates, its method_info as given."""
        plain = {k: v for k, v in to_plain(fake_record(name)).items() if k != "schema"}
        return parse_record({**plain, "method_info": {"name": name, **info}}).method_info.ablation_of

    assert ablates("custom", ablation_of="sys") == "sys"
    assert ablates("sys:variant", ablation_of=None) is None  # recorded: not an ablation
    assert ablates("ssl-pipeline:no-curation") == "ssl-pipeline"  # written before the field (schema 1)
    assert ablates("erm") is None
    assert migrate({"schema": 2, "spec": {}}) == {"schema": 2, "spec": {}}  # the current schema is left as it is


def test_order_by_mean_and_kendall_tau_by_hand():
    assert order_by_mean({"a": 0.8, "b": 0.9, "c": None, "d": 0.8}) == ["b", "a", "d"]  # c undefined; a before d
    assert order_by_mean({"a": 0.1, "b": 0.05}, higher_is_better=False) == ["b", "a"]
    # [A, B, C] against [B, A, C]: (A, B) discordant, (A, C) and (B, C) concordant -> (2 - 1) / 3 = 1/3
    assert kendall_tau(["A", "B", "C"], ["B", "A", "C"]) == pytest.approx(1 / 3)
    assert kendall_tau(["A", "B", "C"], ["C", "B", "A"]) == -1.0 and kendall_tau(["A"], ["A"]) is None
    orders = (list("ABCDE"), list("BADCE"))  # two swaps: (10 - 2·2) / 10 = 0.6, as scipy's tau-b without ties
    assert (
        kendall_tau(*orders)
        == pytest.approx(0.6)
        == pytest.approx(kendalltau([orders[1].index(m) for m in "ABCDE"], range(5)).statistic)
    )
    with pytest.raises(ValueError, match="same distinct items"):
        kendall_tau(["A", "B"], ["A", "C"])


def test_minimum_detectable_difference_by_hand_and_by_simulation():
    from fairfacebench.metrics.compare import minimum_detectable_difference

    # n = 5, sd 1: (t_.975,4 = 2.7764 + t_.8,4 = 0.9410) / √5 = 1.6625
    assert minimum_detectable_difference(1.0, 5) == pytest.approx(1.6625, abs=1e-4)
    # a shared test set adds a floor that more seeds do not remove: √(0.02²/5 + 0.01²) = 0.013416
    assert minimum_detectable_difference(0.02, 5, test_sd=0.01) == pytest.approx(3.7174 * 0.013416, abs=1e-4)
    assert minimum_detectable_difference(0.02, 1000, test_sd=0.01) > 2.8 * 0.01
    # Holm's worst case over 15 comparisons asks for more
    assert minimum_detectable_difference(1.0, 5, alpha=0.05 / 15) > minimum_detectable_difference(1.0, 5)
    # the paired t-test at that difference rejects in about 80% of simulated experiments (the approximation)
    from scipy import stats

    rng = np.random.default_rng(0)
    d = rng.normal(minimum_detectable_difference(1.0, 10), 1.0, size=(20000, 10))
    t = d.mean(1) / (d.std(1, ddof=1) / np.sqrt(10))
    assert np.mean(np.abs(t) > stats.t.ppf(0.975, 9)) == pytest.approx(0.8, abs=0.03)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        minimum_detectable_difference(1.0, 1)
