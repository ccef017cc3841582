"""The committed result stores (stores/*) as the published board and `load_runs` read them: every interval holds
its estimate (the percentile intervals some old records hold do not: e.g. utkface's ssl-pipeline seed 0, eopp_diff
0.0001 [0.0007, 0.0521]), and a one-seed row has an interval (the learning-curve store's runs recorded none);
and no crossed-bootstrap interval of rows, paired differences or regimes needed widening to hold its estimate; and
every committed run's test numbers recompute from its own stored predictions (today's metric code, and fairlearn)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fairlearn.metrics import equalized_odds_difference
from sklearn.metrics import accuracy_score

import fairfacebench
from fairfacebench.leaderboard.model import SUMMARY_METRICS
from fairfacebench.leaderboard.tables import build
from fairfacebench.metrics import hierarchical
from fairfacebench.metrics.fairness import METRIC_NAMES, compute_metrics
from fairfacebench.metrics.hierarchical import seed_corrected_interval
from fairfacebench.store import ResultStore

STORES = sorted(p for p in (Path(__file__).resolve().parents[1] / "stores").iterdir() if p.is_dir())


def holds(interval, estimate) -> bool:
    lo, hi = interval
    return lo is None or hi is None or lo - 1e-12 <= estimate <= hi + 1e-12


@pytest.mark.parametrize("store", STORES, ids=[p.name for p in STORES])
def test_every_estimate_of_a_committed_store_lies_inside_its_interval(store, monkeypatch):
    # The board widens an interval that misses its estimate; here the crossed bootstrap's own intervals (rows over
    # seeds, paired differences, regimes) must hold theirs unwidened, or the widening would hide a wrong method.
    made = []

    def recorded(*args, **kwargs):
        made.append(seed_corrected_interval(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(hierarchical, "seed_corrected_interval", recorded)
    board = build(store)
    checked = 0
    for table in board.tables:
        for row in table.ok_rows:
            summaries = [(metric, row.summary(metric)) for metric in SUMMARY_METRICS]
            summaries += [(f"{g.regime}: {m}", s) for g in row.regimes or [] for m, s in g.metrics.items()]
            for metric, summary in summaries:
                if summary.interval is not None and summary.mean is not None:
                    assert holds(summary.interval, summary.mean), (table.task, row.method, metric, summary)
                    checked += 1
            assert row.acc.interval is not None, (table.task, row.method)
            differences = [("vs erm", row.vs_erm), ("vs ablation", row.system_vs_ablation)]
            differences += [(g.regime, g.minus_default) for g in row.regimes or []]
            for label, found in differences:
                for metric, d in (found or {}).items():
                    if d.ci95 is not None and d.mean is not None:
                        assert holds(d.ci95, d.mean), (table.task, row.method, label, metric, d)
                        checked += 1
    assert checked > 0
    assert made or all(row.seeds < 2 for table in board.tables for row in table.ok_rows)
    widened = [m for m in made if m["widened_to_estimate"]]
    assert not widened, f"{len(widened)} of {len(made)} crossed-bootstrap intervals missed their estimate"


@pytest.mark.parametrize("store", STORES, ids=[p.name for p in STORES])
def test_every_run_of_a_committed_store_in_load_runs_has_intervals_that_hold_its_estimates(store):
    runs = fairfacebench.load_runs(store)
    for metric in METRIC_NAMES:
        value, lo, hi = runs[f"test.{metric}"], runs[f"test.{metric}.lo"], runs[f"test.{metric}.hi"]
        defined = value.notna()
        assert lo[defined].notna().all(), (store.name, metric)
        outside = runs[defined & ((value < lo - 1e-12) | (value > hi + 1e-12))]
        assert outside.empty, outside[["method", "seed", f"test.{metric}", f"test.{metric}.lo", f"test.{metric}.hi"]]


def same_numbers(recorded: dict, recomputed: dict) -> bool:
    """Every entry of `recorded` equals `recomputed`'s, floats to 1e-12 (both JSON-ready: undefined is null)."""
    if not set(recorded) <= set(recomputed):
        return False
    return recorded == pytest.approx({k: recomputed[k] for k in recorded}, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("store", STORES, ids=[p.name for p in STORES])
def test_every_committed_run_scores_what_its_stored_predictions_say(store):
    # A recomputation of every committed number from the run's own predictions.npz: the summary and the per-group
    # table with today's metric code (a changed definition, or a store edited by hand, fails here), and the
    # headline metrics independently with fairlearn and sklearn (test_metrics proves the definitions agree).
    checked = 0
    results = ResultStore(store, create=False)
    for record in (r for r in results.records() if r.status == "ok"):
        run_id, task, test = record.run_id, record.task_info, record.metrics["test"]
        stored = results.predictions(run_id)
        y, a, y_hat = stored["test_y"], stored["test_a"], stored["test_scores"].argmax(1)
        classes = task.target_classes
        report = compute_metrics(y, y_hat, a, task.group_names, len(classes), classes).to_dict()
        recorded = record.per_group["test"]
        assert recorded["summary"] == test, run_id
        # Records older than a metric (v1's lack cell_acc_std) are checked on the metrics they hold.
        assert same_numbers(recorded["summary"], report["summary"]), run_id
        assert len(recorded["per_group"]) == len(report["per_group"]), run_id
        for row, recomputed in zip(recorded["per_group"], report["per_group"]):
            assert same_numbers(row, recomputed), (run_id, row)
        if len(classes) == 2:
            assert test["acc"] == pytest.approx(accuracy_score(y, y_hat), rel=1e-12), run_id
            eod = equalized_odds_difference(y, y_hat, sensitive_features=a, agg="worst_case")
            assert test["eod_max"] == pytest.approx(eod, rel=1e-12, abs=1e-15), run_id
        checked += 1
    assert checked > 0
