"""Metrics equal fairlearn/sklearn where the definitions agree; hand-checked cases; documented differences."""

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equal_opportunity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from fairfacebench.metrics.bootstrap import _multinomial_resamples, bootstrap_intervals
from fairfacebench.metrics.fairness import (
    METRIC_DEFINITIONS,
    METRIC_NAMES,
    compute_metrics,
    confusion_counts,
    metrics_from_counts,
)

FAIRNESS_GAPS = ("eod_max", "eod_mean", "dp_diff", "eopp_diff")


def _random_case(seed, n_groups, n_classes=2, n=3000):
    """Random predictions with group-dependent base rates and error rates (so the gaps are not ~0)."""
    rng = np.random.default_rng(seed)
    groups = rng.choice(n_groups, size=n, p=rng.dirichlet(np.full(n_groups, 5.0)))
    if n_classes == 2:
        y_true = (rng.random(n) < rng.uniform(0.2, 0.8, n_groups)[groups]).astype(np.int64)
    else:
        y_true = rng.integers(0, n_classes, n)
    flip = rng.random(n) < rng.uniform(0.05, 0.4, n_groups)[groups]
    y_pred = np.where(flip, rng.integers(0, n_classes, n), y_true)
    return y_true, y_pred, groups


def _names(n_groups):
    return [f"g{g}" for g in range(n_groups)]


def _fairlearn_gaps(y_true, y_pred, groups):
    """The four binary gap metrics as fairlearn computes them (reference definitions of METRICS.md)."""
    return {
        "eod_max": equalized_odds_difference(y_true, y_pred, sensitive_features=groups, agg="worst_case"),
        "eod_mean": equalized_odds_difference(y_true, y_pred, sensitive_features=groups, agg="mean"),
        "dp_diff": demographic_parity_difference(y_true, y_pred, sensitive_features=groups),
        "eopp_diff": equal_opportunity_difference(y_true, y_pred, sensitive_features=groups),
    }


def _fairlearn_accuracies(y_true, y_pred, groups):
    """acc, bal_acc, wga and group_acc_std from sklearn / fairlearn MetricFrame (any number of classes)."""
    by_group = MetricFrame(metrics=accuracy_score, y_true=y_true, y_pred=y_pred, sensitive_features=groups)
    cells = MetricFrame(
        metrics=accuracy_score,
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=pd.DataFrame({"y": y_true, "a": groups}),
    )
    return {
        "acc": accuracy_score(y_true, y_pred),
        "bal_acc": balanced_accuracy_score(y_true, y_pred),
        # fairlearn leaves empty (y, a) cells NaN and group_min skips them, as wga does.
        "wga": cells.group_min(),
        "group_acc_std": by_group.by_group.std(ddof=0),
        "cell_acc_std": cells.by_group.std(ddof=0),
    }


def _fairlearn_binary(y_true, y_pred, groups):
    return {**_fairlearn_accuracies(y_true, y_pred, groups), **_fairlearn_gaps(y_true, y_pred, groups)}


def _fairlearn_one_vs_rest(y_true, y_pred, groups, n_classes):
    """Multi-class reference: fairlearn gaps on each one-vs-rest binarisation, averaged over classes."""
    per_class = [
        _fairlearn_gaps((y_true == c).astype(int), (y_pred == c).astype(int), groups) for c in range(n_classes)
    ]
    gaps = {name: np.mean([gap[name] for gap in per_class]) for name in FAIRNESS_GAPS}
    return {**_fairlearn_accuracies(y_true, y_pred, groups), **gaps}


def _assert_metrics_equal(ours, reference):
    for name in METRIC_NAMES:
        assert ours[name] == pytest.approx(reference[name], rel=1e-12, abs=1e-15), name


# --- definitions and counts ---------------------------------------------------------------


def test_definitions_cover_every_metric_and_state_conventions():
    assert tuple(METRIC_DEFINITIONS) == METRIC_NAMES
    assert "ddof=0" in METRIC_DEFINITIONS["group_acc_std"]
    for name in FAIRNESS_GAPS:
        assert "one-vs-rest" in METRIC_DEFINITIONS[name]
        assert "where the rate is defined" in METRIC_DEFINITIONS[name]
    assert "agg='worst_case'" in METRIC_DEFINITIONS["eod_max"]
    assert "agg='mean'" in METRIC_DEFINITIONS["eod_mean"]


def test_confusion_counts_match_a_row_loop():
    y_true, y_pred, groups = _random_case(seed=3, n_groups=4, n_classes=3, n=500)
    expected = np.zeros((4, 3, 3), dtype=np.int64)
    for g, y, yhat in zip(groups, y_true, y_pred):
        expected[g, y, yhat] += 1
    counts = confusion_counts(y_true, y_pred, groups, n_groups=4, n_classes=3)
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"y_pred": np.array([0.0, 1.0, 1.0])}, "integer codes"),
        ({"groups": np.array([0, 1, 2])}, "n_groups=2"),
        ({"y_true": np.array([0, 1, 2])}, "n_classes=2"),
        ({"groups": np.array([0, 1])}, "one entry per test row"),
    ],
)
def test_bad_inputs_raise_a_message_naming_the_problem(kwargs, message):
    args = {"y_true": np.array([0, 1, 1]), "y_pred": np.array([0, 1, 0]), "groups": np.array([0, 1, 1])}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        confusion_counts(**args, n_groups=2)


# --- hand-built cases ---------------------------------------------------------------------


def test_hand_built_binary_case():
    # a=0: y=[1,1,1,0,0,0] ŷ=[1,1,0,1,0,0] -> TP=2 FN=1 FP=1 TN=2: TPR=2/3 FPR=1/3 sel=3/6 acc=4/6
    # a=1: y=[1,1,0,0,0]   ŷ=[1,0,0,0,0]   -> TP=1 FN=1 FP=0 TN=3: TPR=1/2 FPR=0   sel=1/5 acc=4/5
    y_true = np.array([1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0])
    y_pred = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0])
    groups = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    expected = {
        "acc": 8 / 11,  # (4 + 4) correct of 11
        "bal_acc": (3 / 5 + 5 / 6) / 2,  # recall(Y=1) = (2+1)/(3+2), recall(Y=0) = (2+3)/(3+3)
        "eod_max": 1 / 3,  # max(TPR gap 2/3-1/2 = 1/6, FPR gap 1/3-0 = 1/3)
        "eod_mean": 1 / 4,  # (1/6 + 1/3) / 2
        "dp_diff": 3 / 10,  # 3/6 - 1/5
        "eopp_diff": 1 / 6,  # TPR gap
        "wga": 1 / 2,  # cells (1,a0)=2/3 (0,a0)=2/3 (1,a1)=1/2 (0,a1)=3/3
        "group_acc_std": 1 / 15,  # accs 10/15, 12/15: mean 11/15, deviations ±1/15
        "cell_acc_std": 19**0.5 / 24,  # cells 2/3, 2/3, 1/2, 1: mean 17/24, deviations -1, -1, -5, 7 (/24)
    }
    report = compute_metrics(y_true, y_pred, groups, ["a0", "a1"])
    _assert_metrics_equal(report.summary, expected)
    _assert_metrics_equal(_fairlearn_binary(y_true, y_pred, groups), expected)
    rows = {row["group"]: row for row in report.per_group}
    assert rows["a0"] == pytest.approx(
        {
            "group": "a0",
            "n": 6,
            "positives": 3,
            "acc": 4 / 6,
            "tpr": 2 / 3,
            "fpr": 1 / 3,
            "selection_rate": 1 / 2,
            "note": "",
        }
    )
    assert rows["a1"] == pytest.approx(
        {
            "group": "a1",
            "n": 5,
            "positives": 2,
            "acc": 4 / 5,
            "tpr": 1 / 2,
            "fpr": 0.0,
            "selection_rate": 1 / 5,
            "note": "",
        }
    )


def test_hand_built_three_class_case():
    # a=0: y=[0,1,2,2] ŷ=[0,1,2,1] (acc 3/4); a=1: y=[0,0,1,2] ŷ=[0,1,1,1] (acc 2/4)
    # one-vs-rest (TPR, FPR, sel) per class, a=0 | a=1, and gaps (TPR, FPR, sel):
    #   class 0: (1, 0, 1/4)   | (1/2, 0, 1/4)   -> (1/2, 0, 0):   eod_max 1/2, eod_mean 1/4
    #   class 1: (1, 1/3, 1/2) | (1, 2/3, 3/4)   -> (0, 1/3, 1/4): eod_max 1/3, eod_mean 1/6
    #   class 2: (1/2, 0, 1/4) | (0, 0, 0)       -> (1/2, 0, 1/4): eod_max 1/2, eod_mean 1/4
    y_true = np.array([0, 1, 2, 2, 0, 0, 1, 2])
    y_pred = np.array([0, 1, 2, 1, 0, 1, 1, 1])
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    expected = {
        "acc": 5 / 8,
        "bal_acc": (2 / 3 + 1 + 1 / 3) / 3,  # recalls: class 0 2/3, class 1 2/2, class 2 1/3
        "eod_max": (1 / 2 + 1 / 3 + 1 / 2) / 3,  # = 4/9
        "eod_mean": (1 / 4 + 1 / 6 + 1 / 4) / 3,  # = 2/9
        "dp_diff": (0 + 1 / 4 + 1 / 4) / 3,  # = 1/6
        "eopp_diff": (1 / 2 + 0 + 1 / 2) / 3,  # = 1/3
        "wga": 0.0,  # cell (y=2, a=1): its one row is predicted 1
        "group_acc_std": 1 / 8,  # accs 3/4, 1/2: deviations ±1/8
        "cell_acc_std": 5**0.5 / 6,  # cells 1, 1, 1/2 | 1/2, 1, 0: mean 2/3, squared deviations sum 30/36
    }
    report = compute_metrics(y_true, y_pred, groups, ["a0", "a1"], n_classes=3, class_names=["young", "mid", "old"])
    _assert_metrics_equal(report.summary, expected)
    _assert_metrics_equal(_fairlearn_one_vs_rest(y_true, y_pred, groups, 3), expected)
    assert any("one-vs-rest" in note for note in report.notes)
    cell = next(r for r in report.per_class_group if r["class"] == "mid" and r["group"] == "a1")
    assert cell == pytest.approx(
        {
            "class": "mid",
            "group": "a1",
            "n": 4,
            "positives": 1,
            "tpr": 1.0,
            "fpr": 2 / 3,
            "selection_rate": 3 / 4,
            "note": "",
        }
    )
    assert all(math.isnan(row["tpr"]) and "per_class_group" in row["note"] for row in report.per_group)


# --- random cases against fairlearn -------------------------------------------------------


@pytest.mark.parametrize("n_groups", range(2, 8))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metrics_equal_fairlearn(seed, n_groups):
    y_true, y_pred, groups = _random_case(seed, n_groups)
    # Precondition: every group has positives and negatives, where fairlearn's definitions and ours agree.
    assert (confusion_counts(y_true, y_pred, groups, n_groups).sum(axis=-1) > 0).all()
    report = compute_metrics(y_true, y_pred, groups, _names(n_groups))
    _assert_metrics_equal(report.summary, _fairlearn_binary(y_true, y_pred, groups))

    frame = MetricFrame(
        metrics={
            "acc": accuracy_score,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
            "selection_rate": selection_rate,
        },
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=groups,
    ).by_group
    for g, row in enumerate(report.per_group):
        assert row["n"] == (groups == g).sum()
        assert row["positives"] == y_true[groups == g].sum()
        for column in ("acc", "tpr", "fpr", "selection_rate"):
            assert row[column] == pytest.approx(frame.loc[g, column], rel=1e-12), (g, column)


@pytest.mark.parametrize("n_classes", [3, 5])
@pytest.mark.parametrize("n_groups", [2, 4, 7])
def test_multiclass_metrics_equal_fairlearn_one_vs_rest_average(n_classes, n_groups):
    y_true, y_pred, groups = _random_case(seed=n_classes * 10 + n_groups, n_groups=n_groups, n_classes=n_classes)
    assert (confusion_counts(y_true, y_pred, groups, n_groups, n_classes).sum(axis=-1) > 0).all()
    report = compute_metrics(y_true, y_pred, groups, _names(n_groups), n_classes=n_classes)
    _assert_metrics_equal(report.summary, _fairlearn_one_vs_rest(y_true, y_pred, groups, n_classes))
    assert len(report.per_class_group) == n_classes * n_groups


# --- undefined quantities ------------------------------------------------------------------


def _case_with_a_group_without_positives():
    # a=0: y=[1,0,1,0] ŷ=[1,0,0,1] -> TPR 1/2, FPR 1/2, sel 1/2
    # a=1: y=[0,0,0]   ŷ=[1,0,0]   -> no positives: TPR undefined; FPR 1/3, sel 1/3
    # a=2: y=[1,1,0]   ŷ=[1,0,0]   -> TPR 1/2, FPR 0, sel 1/3
    y_true = np.array([1, 0, 1, 0, 0, 0, 0, 1, 1, 0])
    y_pred = np.array([1, 0, 0, 1, 1, 0, 0, 1, 0, 0])
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    return y_true, y_pred, groups


def test_group_without_positives_is_nan_with_reason_and_excluded_from_tpr_gap():
    y_true, y_pred, groups = _case_with_a_group_without_positives()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = compute_metrics(y_true, y_pred, groups, ["a0", "a1", "a2"])
    row = report.per_group[1]
    assert row["positives"] == 0 and math.isnan(row["tpr"])
    assert row["note"] == "no positives (Y=1): TPR undefined"
    assert row["fpr"] == pytest.approx(1 / 3)
    # TPR gap over a0, a2 only: 1/2 - 1/2 = 0; FPR gap 1/2 - 0 = 1/2.
    assert report.summary["eopp_diff"] == 0.0
    assert report.summary["eod_max"] == pytest.approx(1 / 2)
    assert report.summary["eod_mean"] == pytest.approx(1 / 4)
    assert report.summary["dp_diff"] == pytest.approx(1 / 2 - 1 / 3)
    assert any("TPR undefined (no positives) in groups ['a1']" in note for note in report.notes)
    assert any("(y=1, a=a1)" in note for note in report.notes)  # empty wga cell, excluded
    assert report.summary["wga"] == pytest.approx(1 / 2)  # cells (1,a0) and (1,a2) both 1/2


def test_fairlearn_counts_tpr_as_zero_for_a_group_without_positives():
    """Documented difference: fairlearn's TPR is sklearn confusion_matrix(normalize="true"), 0/0 -> 0."""
    y_true, y_pred, groups = _case_with_a_group_without_positives()
    ours = compute_metrics(y_true, y_pred, groups, ["a0", "a1", "a2"]).summary
    fairlearn_tpr = MetricFrame(metrics=true_positive_rate, y_true=y_true, y_pred=y_pred, sensitive_features=groups)
    assert fairlearn_tpr.by_group[1] == 0.0
    # With TPR_a1 = 0 fairlearn's TPR gap is 1/2 - 0 = 1/2 instead of our 0 ...
    assert equal_opportunity_difference(y_true, y_pred, sensitive_features=groups) == pytest.approx(1 / 2)
    assert equalized_odds_difference(y_true, y_pred, sensitive_features=groups, agg="mean") == pytest.approx(1 / 2)
    assert ours["eod_mean"] == pytest.approx(1 / 4)
    # ... and equals ours once fairlearn only sees the groups where TPR is defined.
    has_positives = groups != 1
    assert ours["eopp_diff"] == equal_opportunity_difference(
        y_true[has_positives], y_pred[has_positives], sensitive_features=groups[has_positives]
    )
    # FPR is defined in every group, so the FPR gap (here the larger one) and eod_max agree.
    assert ours["eod_max"] == equalized_odds_difference(y_true, y_pred, sensitive_features=groups)


def test_group_without_negatives_has_nan_fpr_where_fairlearn_reports_zero():
    # a=0: y=[1,0,1,0] ŷ=[1,1,0,0] -> TPR 1/2, FPR 1/2;  a=1: y=[1,1] ŷ=[1,0] -> TPR 1/2, no negatives
    y_true = np.array([1, 0, 1, 0, 1, 1])
    y_pred = np.array([1, 1, 0, 0, 1, 0])
    groups = np.array([0, 0, 0, 0, 1, 1])
    report = compute_metrics(y_true, y_pred, groups, ["a0", "a1"])
    assert math.isnan(report.per_group[1]["fpr"])
    assert report.per_group[1]["note"] == "no negatives (Y=0): FPR undefined"
    # FPR defined in one group only -> FPR gap NaN -> eod NaN; TPR gap is 0.
    assert report.summary["eopp_diff"] == 0.0
    assert math.isnan(report.summary["eod_max"]) and math.isnan(report.summary["eod_mean"])
    assert any("eod_max" in note and "NaN" in note for note in report.notes)
    fairlearn_fpr = MetricFrame(metrics=false_positive_rate, y_true=y_true, y_pred=y_pred, sensitive_features=groups)
    assert fairlearn_fpr.by_group[1] == 0.0
    assert equalized_odds_difference(y_true, y_pred, sensitive_features=groups) == pytest.approx(1 / 2)


def test_group_with_no_rows_is_excluded_everywhere_like_fairlearn_which_never_sees_it():
    y_true, y_pred, groups = _random_case(seed=5, n_groups=3)
    report = compute_metrics(y_true, y_pred, groups, ["a0", "a1", "a2", "absent"])
    empty = report.per_group[3]
    assert empty["n"] == 0 and all(math.isnan(empty[k]) for k in ("acc", "tpr", "fpr", "selection_rate"))
    assert empty["note"].startswith("no rows")
    assert any("['absent']" in note for note in report.notes)
    _assert_metrics_equal(report.summary, _fairlearn_binary(y_true, y_pred, groups))


def test_multiclass_class_absent_from_target_is_left_out_of_the_class_average():
    y_true, y_pred, groups = _random_case(seed=9, n_groups=3, n_classes=3)
    y_true = np.where(y_true == 2, 1, y_true)  # class 2 never occurs in Y (it may still be predicted)
    report = compute_metrics(y_true, y_pred, groups, _names(3), n_classes=3)
    present = [_fairlearn_gaps((y_true == c).astype(int), (y_pred == c).astype(int), groups) for c in (0, 1)]
    for name in ("eod_max", "eod_mean", "eopp_diff"):
        assert report.summary[name] == pytest.approx(np.mean([m[name] for m in present]), rel=1e-12)
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):
        assert report.summary["bal_acc"] == pytest.approx(balanced_accuracy_score(y_true, y_pred), rel=1e-12)
    assert any("classes absent from Y excluded" in note for note in report.notes)


def test_report_is_strict_json_with_nan_as_null():
    y_true, y_pred, groups = _case_with_a_group_without_positives()
    encoded = compute_metrics(y_true, y_pred, groups, ["a0", "a1", "a2"]).to_dict()
    decoded = json.loads(json.dumps(encoded, allow_nan=False))
    assert decoded["per_group"][1]["tpr"] is None
    assert decoded["definitions"] == METRIC_DEFINITIONS


# --- batched evaluation ---------------------------------------------------------------------


@pytest.mark.parametrize("n_classes", [2, 4])
def test_batched_metrics_from_counts_equal_the_per_row_loop(n_classes):
    batch = [confusion_counts(*_random_case(seed, 5, n_classes, n=200), 5, n_classes) for seed in range(6)]
    batch[1][2] = 0  # a group with no rows
    batch[2][:, 1, :] = 0  # no row with Y=1 in any group
    batch[3][1:] = 0  # a single non-empty group: every gap undefined
    batch = np.stack(batch)
    batched = metrics_from_counts(batch)
    for b, counts in enumerate(batch):
        single = metrics_from_counts(counts)
        for name in METRIC_NAMES:
            assert batched[name].shape == (len(batch),)
            np.testing.assert_allclose(batched[name][b], single[name], rtol=1e-13, equal_nan=True, err_msg=name)
    assert np.isnan(batched["eopp_diff"][3]) and np.isnan(batched["group_acc_std"][3])


# --- bootstrap ------------------------------------------------------------------------------


def test_bootstrap_is_deterministic_for_a_seed():
    y_true, y_pred, groups = _random_case(seed=0, n_groups=4)
    first = bootstrap_intervals(y_true, y_pred, groups, 4, n_resamples=200, seed=7)
    assert first == bootstrap_intervals(y_true, y_pred, groups, 4, n_resamples=200, seed=7)
    assert first["intervals"] != bootstrap_intervals(y_true, y_pred, groups, 4, n_resamples=200, seed=8)["intervals"]
    assert first["method"].startswith(
        "bootstrap over test rows by multinomial resampling of per-(group,y,yhat) confusion counts, "
        "200 resamples, seed 7: BCa"
    )
    assert first["level"] == 0.95 and first["n_resamples"] == 200


@pytest.mark.parametrize("n_classes", [2, 3])
def test_bootstrap_intervals_contain_the_point_estimate(n_classes):
    y_true, y_pred, groups = _random_case(seed=1, n_groups=4, n_classes=n_classes, n=5000)
    point = compute_metrics(y_true, y_pred, groups, _names(4), n_classes=n_classes).summary
    result = bootstrap_intervals(y_true, y_pred, groups, 4, n_classes=n_classes, n_resamples=1000)
    for name in METRIC_NAMES:
        low, high = result["intervals"][name]
        assert low < point[name] < high, name


def test_multinomial_bootstrap_matches_naive_row_resampling_in_distribution():
    y_true, y_pred, groups = _random_case(seed=4, n_groups=3, n=2000)
    n_resamples = 2000
    counts = confusion_counts(y_true, y_pred, groups, 3)
    multinomial = metrics_from_counts(_multinomial_resamples(counts, n_resamples, seed=0))
    rows = np.random.default_rng(1).integers(0, len(y_true), size=(n_resamples, len(y_true)))
    naive = metrics_from_counts(np.stack([confusion_counts(y_true[r], y_pred[r], groups[r], 3) for r in rows]))
    for name in METRIC_NAMES:
        spread = naive[name].std()
        # Means agree to 4 standard errors of a difference of two means; stds to 10 %.
        assert abs(multinomial[name].mean() - naive[name].mean()) < 4 * spread * math.sqrt(2 / n_resamples), name
        assert multinomial[name].std() == pytest.approx(spread, rel=0.10), name
        # The 2.5/97.5 % quantiles (what the intervals are built from) agree to ~3.5 standard errors of a tail quantile.
        np.testing.assert_allclose(
            np.percentile(multinomial[name], [2.5, 97.5]),
            np.percentile(naive[name], [2.5, 97.5]),
            atol=0.3 * spread,
            err_msg=name,
        )


def test_bootstrap_skips_resamples_where_a_metric_is_undefined():
    # a1 has 2 of 400 rows: about (1 - 2/400)^400 ≈ e^-2 ≈ 13.5 % of resamples leave it empty,
    # and with a single non-empty group every gap is undefined in that resample.
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, 400)
    y_true[-2:] = [0, 1]
    y_pred = np.where(rng.random(400) < 0.8, y_true, 1 - y_true)
    groups = np.r_[np.zeros(398, dtype=int), [1, 1]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = bootstrap_intervals(y_true, y_pred, groups, 2, n_resamples=500)
    assert 20 < result["nan_resamples"]["dp_diff"] < 120
    assert result["nan_resamples"]["acc"] == 0
    assert all(bound is not None and math.isfinite(bound) for bound in result["intervals"]["dp_diff"])


def test_bootstrap_reports_none_bounds_for_a_metric_undefined_in_every_resample():
    y_true, y_pred, groups = np.array([1, 0, 0, 0]), np.array([1, 0, 1, 0]), np.array([0, 0, 1, 1])
    result = bootstrap_intervals(y_true, y_pred, groups, 2, n_resamples=50)
    assert result["intervals"]["eopp_diff"] == [None, None]  # a1 never has positives: one TPR at most
    assert result["nan_resamples"]["eopp_diff"] == 50
    json.dumps(result, allow_nan=False)
