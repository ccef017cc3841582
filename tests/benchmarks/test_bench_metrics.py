"""Vectorised metrics vs fairlearn on 100,000 predictions with 7 sensitive groups.

Run with ``pytest tests/benchmarks --benchmark-only -p no:cacheprovider``. fairlearn
is timed once per test (seconds per call); ours goes through pytest-benchmark.
"""

import time

import numpy as np
import pytest
from fairlearn.metrics import (
    MetricFrame,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score

from fairfacebench.metrics.bootstrap import bootstrap_intervals
from fairfacebench.metrics.fairness import compute_metrics

N_ROWS = 100_000
N_GROUPS = 7
N_RESAMPLES = 1000
FAIRLEARN_N_BOOT = 5  # fairlearn costs seconds per resample; extrapolate from a few
FAIRLEARN_METRICS = {
    "acc": accuracy_score,
    "tpr": true_positive_rate,
    "fpr": false_positive_rate,
    "selection_rate": selection_rate,
}


@pytest.fixture(scope="module")
def predictions():
    """Binary predictions with group-dependent base and error rates."""
    rng = np.random.default_rng(0)
    groups = rng.choice(N_GROUPS, size=N_ROWS, p=rng.dirichlet(np.full(N_GROUPS, 5.0)))
    y_true = (rng.random(N_ROWS) < rng.uniform(0.2, 0.8, N_GROUPS)[groups]).astype(np.int64)
    flip = rng.random(N_ROWS) < rng.uniform(0.05, 0.3, N_GROUPS)[groups]
    y_pred = np.where(flip, 1 - y_true, y_true)
    return y_true, y_pred, groups


def _seconds(fn):
    """Wall time of one call, and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _fairlearn_suite(y_true, y_pred, groups, **bootstrap):
    frame = MetricFrame(metrics=FAIRLEARN_METRICS, y_true=y_true, y_pred=y_pred, sensitive_features=groups, **bootstrap)
    return frame, equalized_odds_difference(y_true, y_pred, sensitive_features=groups)


def test_metric_suite_vs_fairlearn(benchmark, predictions):
    y_true, y_pred, groups = predictions
    report = benchmark(compute_metrics, y_true, y_pred, groups, [f"g{g}" for g in range(N_GROUPS)])
    fairlearn_s, (frame, eod_max) = _seconds(lambda: _fairlearn_suite(y_true, y_pred, groups))

    assert report.summary["eod_max"] == pytest.approx(eod_max, rel=1e-12)
    assert report.summary["eopp_diff"] == pytest.approx(frame.difference()["tpr"], rel=1e-12)
    assert report.summary["dp_diff"] == pytest.approx(frame.difference()["selection_rate"], rel=1e-12)
    for g, row in enumerate(report.per_group):
        for column in FAIRLEARN_METRICS:
            assert row[column] == pytest.approx(frame.by_group.loc[g, column], rel=1e-12), (g, column)

    ours_s = benchmark.stats.stats.median
    benchmark.extra_info.update(
        {
            "ours_s": ours_s,
            "fairlearn_s": fairlearn_s,
            "speedup": fairlearn_s / ours_s,
            "n_rows": N_ROWS,
            "n_groups": N_GROUPS,
        }
    )
    assert fairlearn_s / ours_s >= 50


def test_bootstrap_vs_fairlearn_n_boot(benchmark, predictions):
    y_true, y_pred, groups = predictions
    result = benchmark(bootstrap_intervals, y_true, y_pred, groups, N_GROUPS, n_resamples=N_RESAMPLES)
    plain_s, _ = _seconds(lambda: _fairlearn_suite(y_true, y_pred, groups))
    boot_s, (frame, _) = _seconds(
        lambda: _fairlearn_suite(
            y_true, y_pred, groups, n_boot=FAIRLEARN_N_BOOT, ci_quantiles=[0.025, 0.975], random_state=0
        )
    )
    assert len(frame.by_group_ci) == 2

    ours_s = benchmark.stats.stats.median
    fairlearn_per_resample_s = (boot_s - plain_s) / FAIRLEARN_N_BOOT
    fairlearn_extrapolated_s = plain_s + N_RESAMPLES * fairlearn_per_resample_s
    benchmark.extra_info.update(
        {
            "ours_s": ours_s,
            "ours_per_resample_s": ours_s / N_RESAMPLES,
            "fairlearn_n_boot": FAIRLEARN_N_BOOT,
            "fairlearn_measured_s": boot_s,
            "fairlearn_per_resample_s": fairlearn_per_resample_s,
            "fairlearn_extrapolated_s": fairlearn_extrapolated_s,
            "speedup": fairlearn_extrapolated_s / ours_s,
        }
    )
    assert all(low <= high for low, high in result["intervals"].values())
    assert ours_s < 2.0
