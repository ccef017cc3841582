"""The leaderboard as types: a board holds one table per comparison, a table one row per method.

`tables.build` makes a `Board` from the result store and every writer renders
that one board: leaderboard.json is `to_plain(board)` (so the field order below
is the key order of the JSON file), and the Markdown, the CSV and pandas frame,
the site and scripts/board_summary.py read attributes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fairfacebench.flags import Flag  # a row's warnings: its runs' flags (`flags.run_flags`) and its own

# The test metrics of the leaderboard's columns, and every metric a row summarises over seeds (its fields, in order).
TABLE_METRICS = ("acc", "eod_max", "eod_mean", "dp_diff", "wga")
SUMMARY_METRICS = TABLE_METRICS + ("bal_acc", "eopp_diff", "group_acc_std", "cell_acc_std")
# Metrics the paired comparison and the ranking use.
COMPARED_METRICS = ("acc", "eod_max", "eopp_diff", "dp_diff", "wga")
# A system against its own ablation: the compared metrics and the spreads val-reweight's seed drives down.
ABLATION_METRICS = COMPARED_METRICS + ("cell_acc_std", "group_acc_std")
GROUP_METRICS = ("acc", "tpr", "fpr", "selection_rate")
# Metrics each selection regime of a search reports.
REGIME_METRICS = ("acc", "eod_max", "wga")
# Beyond the leaderboard's columns: accuracy at equal fairness (each tolerance), calibration per group, gaps over
# intersectional groups, in-domain vs transfer.
EQUAL_FAIRNESS_METRICS = ("acc", "eod_max")
CALIBRATION_METRICS = ("ece", "ece_max", "ece_gap", "brier", "brier_max", "brier_gap")
INTERSECTIONAL_METRICS = ("eod_max", "eod_mean", "dp_diff", "wga")
TRANSFER_METRICS = ("acc", "eod_max", "wga")
# Significance level of every paired test on the board (Holm's correction within each family).
ALPHA = 0.05
DEFAULT_TRIAL = 0  # a method's default hyperparameters: every seed runs it
DEFAULT = "default"  # the regime of the defaults (`search.regimes`)
REFERENCE_METHOD = "erm"  # what every method is compared against (`Row.vs_erm`, the verdict)
MIN_SEEDS = 3  # below this, across-seed intervals and paired comparisons are flagged (few-seeds) and not judged
# Flags that keep a row off the Pareto front and draw it hollow: its predictions say nothing about fairness.
OFF_FRONT_FLAGS = ("degenerate", "at-chance")


def defined(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


@dataclass(frozen=True)
class MetricSummary:
    """A test metric over the selected run of each seed: mean, std (ddof=1) and 95% interval of the mean over seeds
    (on a board, the crossed bootstrap's over seeds and test rows), or with one seed that run's bootstrap interval;
    no seed defines it: mean NaN, n 0."""

    mean: float | None
    std: float | None
    n: int
    interval: list[float | None] | None


@dataclass(frozen=True)
class PairedDifference:
    """One method minus another over the seeds both ran: the mean of the per-seed differences with the 95% interval
    and p-value of the crossed paired bootstrap over seeds and the shared test rows (`metrics.hierarchical`), and Holm's
    correction over its family (one paired table, one metric). `tied`: Holm does not reject, so the paired interval
    at Holm's level holds 0. Without stored predictions: the mean only (`method` says which)."""

    mean: float | None
    n: int
    ci95: list[float | None] | None
    seeds: list[int]
    p_value: float | None
    p_holm: float | None
    tied: bool | None
    method: str


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
    """What a comparison's VLM was trained on, what its captions name, and its cost: for an encoder trained here
    (the mini-CLIP) its training samples and time; for a pretrained one whose embeddings are cached (the face
    descriptor) the images it embedded and the time, over every array the table's runs read (each once).
    `description`: the sentence every output shows."""

    encoder: str | None
    trained_on: Any
    captions_name: list[str] | None
    samples: Any
    train_time_s: Any
    zero_shot: Any
    description: str = ""


@dataclass(frozen=True)
class EqualFairnessPoint:
    """The selected runs post-processed to eod_max <= tolerance (`metrics.unprocessing`): test accuracy and the
    achieved test eod_max over seeds."""

    tolerance: float
    acc: MetricSummary
    eod_max: MetricSummary


@dataclass(frozen=True)
class GroupCalibration:
    """One sensitive group's ECE and Brier score (means over the selected runs) and its reliability diagram over the
    selected runs' test rows pooled: per bin of confidence, rows, mean confidence, accuracy (None when empty)."""

    group: str
    n: int
    ece: float | None
    brier: float | None
    reliability: list[dict[str, Any]]


@dataclass(frozen=True)
class Calibration:
    """Calibration of the selected runs' test scores (`metrics.calibration`): overall and worst-group values and gaps
    over seeds, and each group's."""

    ece: MetricSummary
    ece_max: MetricSummary
    ece_gap: MetricSummary
    brier: MetricSummary
    brier_max: MetricSummary
    brier_gap: MetricSummary
    per_group: list[GroupCalibration]


@dataclass(frozen=True)
class TransferSummary:
    """The selected runs on another dataset's test split and on their own, both over the shared groups
    (`record.transfer`): test metrics over the seeds that evaluated it."""

    dataset: str
    group_names: list[str]
    seeds: list[int]
    n: int  # the other test split's rows scored (the first seed's)
    left_out: int  # its rows whose class the shared concept does not cover
    in_domain: dict[str, MetricSummary]  # TRANSFER_METRICS
    transfer: dict[str, MetricSummary]
    flags: list[Flag] = field(default_factory=list)  # its runs' `flags.transfer_flags`, each distinct one once


@dataclass(frozen=True)
class MechanismSummary:
    """One number of a stage's diagnostics (`fairfacebench.diagnostics`) over the selected runs that report it:
    the mean and the smallest and largest value over seeds (`leaderboard.mechanisms`)."""

    stage: str
    quantity: str  # dotted path into the stage's report, e.g. 'accuracy_all_per_group.White'
    mean: float
    low: float
    high: float
    seeds: int


@dataclass(frozen=True)
class RegimeResult:
    """One selection regime of a search: the trial it picks on the search seeds, that trial's test metrics over the
    seeds it ran on, and regime − default paired over the seeds both ran (None for the default itself, for a pick of
    the defaults, and for a rule's pick not yet run on every seed the defaults ran). A regime that picks the trial an
    earlier one picked (`same_as`) carries that regime's difference and Holm-corrected verdict: one test, not two."""

    regime: str  # 'default', a selection rule's name, or 'test oracle'
    description: str
    trial: int | None  # None: every trial failed on the search seeds
    seeds: list[int]
    metrics: dict[str, MetricSummary]  # REGIME_METRICS
    minus_default: dict[str, PairedDifference] | None
    upper_bound: bool  # the test oracle: read test labels, so no method may claim it
    not_run_on: list[int] = field(default_factory=list)  # a rule's pick: seeds the defaults ran that it has not (yet)
    same_as: str | None = None  # an earlier regime that picks the same trial: its test, not a second one


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
    tier: str  # the information tier of its record's supervision (`flags.information_tier`)
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
    hardware: list[str]  # where the selected runs ran (`cpu_model (torch_cpu_capability)`), each once
    isolation: str  # where its runs' method ran: 'sealed', 'in-process' or 'mixed' (`row_flags.isolation`)
    flags: list[Flag]
    regimes: list[RegimeResult] | None = None  # with a search in the store: default, each rule's pick, the oracle
    search_pending: bool = False  # it shows its defaults until its search and its pick's final seeds have run
    vs_erm: dict[str, PairedDifference] | None = None
    system_vs_ablation: dict[str, PairedDifference] | None = None
    calibration: Calibration | None = None  # None: no selected run stored predictions (the table's notes say)
    equal_fairness: list[EqualFairnessPoint] | None = None  # None: not computed (the table's notes say why)
    intersectional: dict[str, MetricSummary] | None = None  # INTERSECTIONAL_METRICS over the table's cells
    transfer: list[TransferSummary] | None = None  # None: no selected run was evaluated on another dataset
    mechanisms: list[MechanismSummary] | None = None  # None: no selected run has diagnostics of its stages

    @property
    def OMIT_WHEN_NONE(self) -> tuple[str, ...]:
        """What `typed.to_plain` leaves out when None: the regimes of a store without a search; a failed row is
        compared with nothing, so its plain form has no comparison fields (a finished row has them, null when there
        is nothing to compare with)."""
        return ("regimes",) if self.ok else ("regimes", "vs_erm", "system_vs_ablation")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def degenerate(self) -> bool:
        """Its predictions say nothing about fairness (one class for a group, or at chance): off the Pareto front."""
        return any(f.code in OFF_FRONT_FLAGS for f in self.flags)

    def flagged(self, code: str) -> bool:
        return any(f.code == code for f in self.flags)

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
class MetricRanking:
    """The methods of one information tier ranked on one metric (Demšar 2006: a block per seed every one of them
    ran; 1 = best, ties share the mean rank), the Nemenyi critical difference, the best mean and the methods tied
    with it (paired crossed bootstrap against the best not significant after Holm over the tier's methods)."""

    tier: str
    metric: str
    seeds: list[int]
    ranks: dict[str, float | None]
    critical_difference: float | None
    best: str | None
    tied_with_best: list[str]  # the best first
    worse_than_best: list[str]  # Holm rejects; methods without stored predictions are in neither list


@dataclass(frozen=True)
class ParetoFront:
    """The methods of one tier no other of that tier beats on both test accuracy and eod_max (means over seeds;
    rows flagged degenerate or at chance are left out)."""

    tier: str
    methods: list[str]


@dataclass(frozen=True)
class HardwareRuns:
    """One machine the table's selected runs ran on, how many of them and whose."""

    hardware: str
    runs: int
    methods: list[str]


@dataclass(frozen=True)
class SearchProgress:
    """How far one method's search has come: its trials (the defaults included) with a run on every search seed, of
    those planned; once complete, the trial the table's rule picks there and the seeds the defaults ran on where
    that pick has not run yet."""

    trials: int
    planned: int
    search_seeds: list[int]
    pick: int | None = None
    pending_seeds: list[int] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.trials >= self.planned

    @property
    def pending(self) -> bool:
        """The row stands for the defaults: trials are left on the search seeds, or the pick on the final seeds."""
        return not self.complete or bool(self.pending_seeds)


@dataclass(frozen=True)
class SearchProtocol:
    """A store's hyperparameter search: trials > 0 on the search seeds, then each rule's pick on the other seeds."""

    search_seeds: list[int]
    trials: list[int]
    regimes: list[str]


@dataclass(frozen=True)
class EqualFairnessOrder:
    """The finished rows with a number at one tolerance, most accurate first at that tolerance and by raw test
    accuracy, and Kendall's τ between the two orders (means over seeds; no test of the differences)."""

    tolerance: float
    order: list[str]
    raw_order: list[str]
    kendall_tau: float | None


@dataclass(frozen=True)
class IntersectionalCells:
    """The intersectional groups of a table's test split (`metrics.intersectional`): attributes read from `dataset`,
    each kept cell with its rows, the merged and left-out cells with their sizes, and the rule."""

    dataset: str
    attributes: list[str]
    min_cell: int
    rule: str
    groups: list[tuple[str, int]]
    merged: list[dict[str, Any]]
    left_out: list[dict[str, Any]]


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
    rankings: list[MetricRanking]
    pareto_fronts: list[ParetoFront]
    hardware: list[HardwareRuns]
    banner: str | None  # the smoke or demonstration budget: not a result
    seed_note: str | None
    search: SearchProtocol | None = None
    stage_note: str | None = None  # a search still running: rows at their defaults beside tuned ones
    intersectional: IntersectionalCells | None = None
    equal_fairness_orders: list[EqualFairnessOrder] = field(default_factory=list)
    analysis_notes: list[str] = field(default_factory=list)  # what each analysis uses, and why one was not made
    verdict: list[Verdict] = field(default_factory=list)  # the methods against erm in words (`leaderboard.verdict`)
    ablation_verdict: list[Verdict] = field(default_factory=list)  # each system against its own ablation, in words

    OMIT_WHEN_NONE = ("search", "stage_note")

    @property
    def ok_rows(self) -> list[Row]:
        return [r for r in self.rows if r.ok]

    @property
    def interval_notes(self) -> list[str]:
        return sorted({r.interval_method for r in self.rows if r.interval_method})


@dataclass(frozen=True)
class Verdict:
    """One category of a table's verdict against erm (`leaderboard.verdict`) and its methods, each with its tier."""

    category: str
    methods: list[str]


@dataclass(frozen=True)
class Board:
    """Every comparison of a store under one selection rule."""

    selection_rule: str
    tables: list[Table]
