"""Vectorised metrics vs fairlearn on 100,000 predictions with 7 sensitive groups.

Run with ``pytest tests/benchmarks --benchmark-only -p no:cacheprovider``. Ours and fairlearn are timed in
interleaved rounds (verdicts.interleaved); the verdict is the median speedup.
"""

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
from verdicts import interleaved, seconds

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


def _fairlearn_suite(y_true, y_pred, groups, **bootstrap):
    frame = MetricFrame(metrics=FAIRLEARN_METRICS, y_true=y_true, y_pred=y_pred, sensitive_features=groups, **bootstrap)
    return frame, equalized_odds_difference(y_true, y_pred, sensitive_features=groups)


def test_metric_suite_vs_fairlearn(benchmark, verdict, predictions):
    y_true, y_pred, groups = predictions
    names = [f"g{g}" for g in range(N_GROUPS)]
    report = compute_metrics(y_true, y_pred, groups, names)
    frame, eod_max = _fairlearn_suite(y_true, y_pred, groups)

    assert report.summary["eod_max"] == pytest.approx(eod_max, rel=1e-12)
    assert report.summary["eopp_diff"] == pytest.approx(frame.difference()["tpr"], rel=1e-12)
    assert report.summary["dp_diff"] == pytest.approx(frame.difference()["selection_rate"], rel=1e-12)
    for g, row in enumerate(report.per_group):
        for column in FAIRLEARN_METRICS:
            assert row[column] == pytest.approx(frame.by_group.loc[g, column], rel=1e-12), (g, column)

    rounds = benchmark.pedantic(
        lambda: interleaved(
            lambda: seconds(lambda: _fairlearn_suite(y_true, y_pred, groups)),
            lambda: seconds(lambda: compute_metrics(y_true, y_pred, groups, names)),
            max_spread=0.1,
        ),
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update(
        ours_s=float(np.median(rounds.denominators)),
        fairlearn_s=float(np.median(rounds.numerators)),
        speedups=[round(r, 1) for r in rounds.ratios],
        n_rows=N_ROWS,
        n_groups=N_GROUPS,
    )
    verdict(rounds.verdict("metrics/fairlearn/ours time, metric suite", 50, unit="x", note=f"{N_ROWS:,} rows"))


def _fairlearn_bootstrap_s(y_true, y_pred, groups) -> float:
    """fairlearn's time for N_RESAMPLES resamples, extrapolated from FAIRLEARN_N_BOOT (it costs seconds each)."""
    plain_s = seconds(lambda: _fairlearn_suite(y_true, y_pred, groups))
    boot_s = seconds(
        lambda: _fairlearn_suite(
            y_true, y_pred, groups, n_boot=FAIRLEARN_N_BOOT, ci_quantiles=[0.025, 0.975], random_state=0
        )
    )
    return plain_s + N_RESAMPLES * (boot_s - plain_s) / FAIRLEARN_N_BOOT


def test_bootstrap_vs_fairlearn_n_boot(benchmark, verdict, predictions):
    y_true, y_pred, groups = predictions
    result = bootstrap_intervals(y_true, y_pred, groups, N_GROUPS, n_resamples=N_RESAMPLES)
    assert all(low <= high for low, high in result["intervals"].values())
    rounds = benchmark.pedantic(
        lambda: interleaved(
            lambda: _fairlearn_bootstrap_s(y_true, y_pred, groups),
            lambda: seconds(lambda: bootstrap_intervals(y_true, y_pred, groups, N_GROUPS, n_resamples=N_RESAMPLES)),
            min_rounds=3,
            max_rounds=5,
            max_spread=0.1,
        ),
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update(
        ours_s=float(np.median(rounds.denominators)),
        fairlearn_extrapolated_s=float(np.median(rounds.numerators)),
        fairlearn_n_boot=FAIRLEARN_N_BOOT,
        speedups=[round(r, 1) for r in rounds.ratios],
    )
    verdict(
        rounds.verdict(
            f"metrics/fairlearn/ours time, {N_RESAMPLES} bootstrap resamples",
            50,
            unit="x",
            note=f"fairlearn extrapolated from n_boot={FAIRLEARN_N_BOOT}",
        )
    )
