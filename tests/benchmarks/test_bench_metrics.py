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


def _one_sum_per_seed(cells, weights, n_cells):
    """The crossed bootstrap's counts as `weighted_counts` summed them before 802d79d: one bincount over every row
    and replicate per seed (the reference the base-and-moves form must equal and beat)."""
    offsets = (np.arange(len(weights)) * n_cells)[:, None]
    out = np.empty((len(weights), len(cells), n_cells))
    for s, row_cells in enumerate(cells):
        flat = np.bincount((offsets + row_cells[None]).ravel(), weights.ravel(), minlength=len(weights) * n_cells)
        out[:, s] = flat.reshape(len(weights), n_cells)
    return out


def test_crossed_bootstrap_counts_base_and_moves_vs_one_sum_per_seed(benchmark, verdict):
    """A block of the crossed bootstrap as the v2 board draws it: 100 replicates of 2,300 test rows, 5 seeds, two
    methods' predictions crossed (2 groups x 2 classes x 2 x 2 cells); the seeds disagree on a row's cell for about
    a tenth of the rows, most of them hard rows."""
    from fairfacebench.metrics.hierarchical import weighted_counts

    rng = np.random.default_rng(0)
    n, n_seeds, n_cells = 2300, 5, 16
    y, groups, hard = rng.integers(0, 2, n), rng.integers(0, 2, n), rng.random(n) < 0.12
    cells = groups[None] * 2 + y[None]
    for _ in range(2):
        flip = np.where(hard[None], rng.random((n_seeds, n)) < 0.6, rng.random((n_seeds, n)) < 0.03)
        cells = cells * 2 + np.where(flip, 1 - y[None], y[None])
    weights = rng.multinomial(n, np.full(n, 1 / n), size=100).astype(float)
    np.testing.assert_array_equal(weighted_counts(cells, weights, n_cells), _one_sum_per_seed(cells, weights, n_cells))
    rounds = benchmark.pedantic(
        lambda: interleaved(
            lambda: seconds(lambda: [_one_sum_per_seed(cells, weights, n_cells) for _ in range(20)]),
            lambda: seconds(lambda: [weighted_counts(cells, weights, n_cells) for _ in range(20)]),
            max_spread=0.15,
        ),
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update(speedups=[round(r, 2) for r in rounds.ratios])
    verdict(rounds.verdict("metrics/crossed bootstrap counts, one sum per seed / base and moves", 1.3, unit="x"))
