"""The leaderboard as types: a board holds one table per comparison, a table one row per method.

`tables.build` makes a `Board` from the result store and every writer renders
that one board: leaderboard.json is `to_plain(board)` (so the field order below
is the key order of the JSON file), and the Markdown, the CSV and pandas frame,
the site and scripts/board_summary.py read attributes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# The test metrics of the leaderboard's columns, and every metric a row summarises over seeds (its fields, in order).
TABLE_METRICS = ("acc", "eod_max", "eod_mean", "dp_diff", "wga")
SUMMARY_METRICS = TABLE_METRICS + ("bal_acc", "eopp_diff", "group_acc_std", "cell_acc_std")
# Metrics the paired comparison and the ranking use.
COMPARED_METRICS = ("acc", "eod_max", "eopp_diff", "dp_diff", "wga")
# A system against its own ablation: the compared metrics and the spreads val-reweight's seed drives down.
ABLATION_METRICS = COMPARED_METRICS + ("cell_acc_std", "group_acc_std")
GROUP_METRICS = ("acc", "tpr", "fpr", "selection_rate")


def defined(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


@dataclass(frozen=True)
class MetricSummary:
    """A test metric over the selected run of each seed: mean, std (ddof=1) and 95% interval of the mean over seeds,
    or with one seed that run's bootstrap interval; no seed defines it: mean NaN, n 0."""

    mean: float | None
    std: float | None
    n: int
    interval: list[float | None] | None


@dataclass(frozen=True)
class PairedDifference:
    """One method minus another over the seeds both ran (`metrics.compare.paired_difference`)."""

    mean: float | None
    std: float | None
    n: int
    ci95: list[float | None]
    seeds: list[int]


@dataclass(frozen=True)
class FailedRun:
    run_id: str
    error: str


@dataclass(frozen=True)
class SelectedRun:
    """The trial the selection rule chose for one seed."""

    seed: int
    trial: int
    run_id: str
    hparams: dict[str, Any]


@dataclass(frozen=True)
class GroupMetrics:
    """Test metrics of one sensitive group, the mean over the selected runs."""

    group: str
    n: int
    acc: float
    tpr: float
    fpr: float
    selection_rate: float


@dataclass(frozen=True)
class SharedPreparation:
    """What a comparison's VLM was trained on (by the project, before any run), what its captions name, its cost."""

    encoder: str | None
    trained_on: Any
    captions_name: list[str] | None
    samples: Any
    train_time_s: Any
    zero_shot: Any


@dataclass(frozen=True)
class Row:
    """One method in one comparison: its runs, the selected trial per seed, test metrics over seeds, and (finished
    rows only) its paired differences and mean rank."""

    method: str
    status: str  # 'ok' when some seed finished, else 'failed'
    seeds: int
    runs: int
    method_version: int
    superseded_runs: int  # runs of an older method version, left out
    failed_runs: list[FailedRun]
    labels_used: str
    variant: str | None
    description: str
    citation: str
    ablation_of: str | None
    selected: list[SelectedRun]
    budget_report: list[dict[str, Any]]  # the selected runs' budget reports, as recorded
    steps: float
    forward_samples: float
    fit_time_s: float
    acc: MetricSummary
    eod_max: MetricSummary
    eod_mean: MetricSummary
    dp_diff: MetricSummary
    wga: MetricSummary
    bal_acc: MetricSummary
    eopp_diff: MetricSummary
    group_acc_std: MetricSummary
    cell_acc_std: MetricSummary
    interval_method: str | None
    per_group: list[GroupMetrics]
    per_seed: dict[str, dict[int, float | None]]  # metric -> seed -> the selected run's test value
    degenerate: list[str]
    vs_erm: dict[str, PairedDifference] | None = None
    system_vs_ablation: dict[str, PairedDifference] | None = None
    mean_rank: float | None = None

    @property
    def OMIT_WHEN_NONE(self) -> tuple[str, ...]:
        """What `typed.to_plain` leaves out when None: a failed row is compared with nothing, so its plain form has
        no comparison fields (a finished row has them, null when there is nothing to compare with)."""
        return () if self.ok else ("vs_erm", "system_vs_ablation", "mean_rank")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def label(self) -> str:
        """The method, with its variant in brackets."""
        return self.method + (f" [{self.variant}]" if self.variant else "")

    def summary(self, metric: str) -> MetricSummary:
        """The summary of one of SUMMARY_METRICS."""
        if metric not in SUMMARY_METRICS:
            raise KeyError(f"a leaderboard row summarises {list(SUMMARY_METRICS)}, not {metric!r}")
        return getattr(self, metric)


@dataclass(frozen=True)
class Ranking:
    """Mean ranks over (metric, seed) blocks and the Nemenyi critical difference (Demšar 2006)."""

    blocks: int
    block_rule: str
    critical_difference: float | None
    caveat: str


@dataclass(frozen=True)
class Table:
    """One comparison (runs whose comparison settings agree): its settings, selection rule and rows."""

    comparison_id: str
    dataset: str
    task: str
    budget: str
    comparison: dict[str, Any]
    distinguished_by: dict[str, Any]  # the settings that tell this comparison from the store's others
    selection_rule: str
    shared_preparation: list[SharedPreparation]
    rows: list[Row]
    ranking: Ranking
    seed_note: str | None

    @property
    def ok_rows(self) -> list[Row]:
        return [r for r in self.rows if r.ok]

    @property
    def interval_notes(self) -> list[str]:
        return sorted({r.interval_method for r in self.rows if r.interval_method})

    @property
    def smoke(self) -> bool:
        return self.budget == "smoke"


@dataclass(frozen=True)
class Board:
    """Every comparison of a store under one selection rule."""

    selection_rule: str
    tables: list[Table]
