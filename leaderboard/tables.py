"""Leaderboard tables built from the result store (never from in-memory state), as a typed `model.Board`.

One table per comparison (runs whose comparison settings agree): one row per
method, the trial chosen per seed by a named validation-only selection rule
(with a search in the store: the trial the rule picks on the search seeds, over
every seed it ran on, beside the defaults and the other regimes), test metrics
as mean ± std over seeds with the interval of the crossed bootstrap over seeds
and test rows, paired differences against erm and of each system against its
own ablations (the same bootstrap, paired, with Holm), ranks per metric and
Pareto fronts per information tier, and every warning as a flag.  Failed runs
are shown as failed, not dropped.  `render` writes the board as Markdown, CSV
and JSON.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fairfacebench.analyses import StoredAnalyses
from fairfacebench.errors import ConfigError
from fairfacebench.flags import information_tier
from fairfacebench.leaderboard.analyses import row_analyses, table_analyses
from fairfacebench.leaderboard.evidence import StoredRuns
from fairfacebench.leaderboard.mechanisms import mechanisms
from fairfacebench.leaderboard.model import (
    ABLATION_METRICS,
    COMPARED_METRICS,
    REFERENCE_METHOD,
    REGIME_METRICS,
    SUMMARY_METRICS,
    Board,
    FailedRun,
    GroupMetrics,
    MetricSummary,
    RegimeResult,
    Row,
    SearchProgress,
    SearchProtocol,
    SelectedRun,
    SharedPreparation,
    Table,
)
from fairfacebench.leaderboard.paired import Paired, holm_columns
from fairfacebench.leaderboard.ranks import pareto_fronts, rankings
from fairfacebench.leaderboard.render import foreign_exports, to_json, write_exports
from fairfacebench.leaderboard.row_flags import (
    banner,
    cross_hardware,
    isolation,
    machines,
    row_flags,
    table_hardware,
    with_flag,
)
from fairfacebench.leaderboard.search import (
    DEFAULT,
    DEFAULT_TRIAL,
    ORACLE,
    oracle_runs_final,
    pick_pending,
    picked_trial,
    planned_trials,
    regimes,
    search_seeds,
    trial_runs,
    trials_searched,
)
from fairfacebench.leaderboard.summary import mean_of, summarise
from fairfacebench.leaderboard.verdict import ablation_verdict, tuned_alike, verdict
from fairfacebench.metrics.fairness import METRIC_NAMES, compute_metrics
from fairfacebench.plan import final_rule
from fairfacebench.plugins import selection_rule
from fairfacebench.readback import DataAccess
from fairfacebench.record import RunRecord
from fairfacebench.spec import COMPARISON_FIELDS, canonical_json, spec_hash
from fairfacebench.store import PREDICTIONS, ResultStore

INTERVAL_NOTE = {
    "crossed": "± is the std over seeds (ddof=1); [lo, hi] the 95% interval of the mean over seeds from the crossed "
    "bootstrap over seeds and the test rows they share, widened for few seeds, so it counts the test set's own "
    "sampling as well as training randomness (docs/METRICS.md)",
    "seeds": "± is the std over seeds (ddof=1); [lo, hi] the 95% Student-t interval of the mean over seeds (a run "
    "stored no predictions, so the test set's own sampling is not counted)",
    "bootstrap": "[lo, hi] is the 95% bootstrap interval over test rows of the single seed: BCa for acc and bal_acc, "
    "the projection of a simultaneous band on the per-group rates for the gaps and wga, so it always holds its "
    "estimate (docs/METRICS.md; recomputed from the stored predictions for records of an older construction)",
    "none": "one seed and no interval: the run holds no interval of the current construction and no stored "
    "predictions to compute one from",
}

BySeed = dict[int, list[RunRecord]]


@dataclass
class Comparison:
    """The runs of one comparison as read from the store: method -> seed -> runs, in store order."""

    settings: dict[str, Any]
    methods: dict[str, BySeed] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))

    @property
    def records(self) -> list[RunRecord]:
        return [r for by_seed in self.methods.values() for runs in by_seed.values() for r in runs]


@dataclass(frozen=True)
class MethodRuns:
    """One method's runs of its newest version in a comparison, and the trial selected per seed."""

    by_seed: BySeed
    version: int
    superseded: int
    ok: list[RunRecord]  # the selected run of each seed that finished, by seed
    failed: list[RunRecord]
    search: SearchProgress | None = None  # with a search in the store: how far the method's has come

    @property
    def searching(self) -> bool:
        """Its search has trials left to run on the search seeds: the row shows the defaults, no regime picks."""
        return self.search is not None and not self.search.complete

    @property
    def pending(self) -> bool:
        """The row shows the defaults: its search, or its pick on the final seeds, has runs left."""
        return self.search is not None and self.search.pending

    @property
    def all(self) -> list[RunRecord]:
        return [r for _, runs in sorted(self.by_seed.items()) for r in runs]


@dataclass(frozen=True)
class Context:
    """What building one table reads besides its runs: the stored evidence, paired differences, the rule."""

    stored: StoredRuns
    paired: Paired
    selection: Any
    search_seeds: list[int]
    regimes: list[tuple[str, str, Any]]
    planned_trials: int = 1  # per method, trial 0 included (`search.planned_trials`)
    oracle_final: bool = False  # the plan runs the test oracle's pick on the final seeds (`final_selection`)


# ------------------------------------------------------------------ reading and selecting runs


def get_rule(name: str) -> Any:
    """An installed selection rule by name, or a member of an installed family such as `val_acc@val_eod_max<=EPS`
    (this repository's rules are found without importing plugins from outside it)."""
    return selection_rule(name)


def missing_test_metrics(record: RunRecord) -> list[str]:
    test = (record.metrics or {}).get("test")
    return [m for m in METRIC_NAMES if test is not None and m not in test]


def complete_test_metrics(record: RunRecord, store: ResultStore) -> None:
    """Test metrics a record predates (a metric added to the suite later), recomputed from its stored predictions."""
    missing = missing_test_metrics(record)
    if not record.ok or not missing or not (store.path(record.run_id) / PREDICTIONS).is_file():
        return
    arrays = store.predictions(record.run_id)
    groups = record.task_info.group_names if record.task_info else None
    if not groups or "test_a" not in arrays:
        return
    n_classes = arrays["test_scores"].shape[1]
    report = compute_metrics(arrays["test_y"], arrays["test_scores"].argmax(1), arrays["test_a"], groups, n_classes)
    record.metrics["test"].update({m: report.summary[m] for m in missing})
    if record.recomputed_from_predictions is None:
        record.recomputed_from_predictions = missing


def read_comparisons(store: ResultStore, defaults_only: bool = False) -> dict[str, Comparison]:
    """Every finished record of the store (`defaults_only`: of trial 0), grouped by comparison id, method and seed."""
    comparisons: dict[str, Comparison] = {}
    for rec in store.records():
        if defaults_only and rec.trial != DEFAULT_TRIAL:
            continue
        complete_test_metrics(rec, store)
        settings = rec.spec.comparison
        key = spec_hash(settings)
        comparisons.setdefault(key, Comparison(settings)).methods[rec.method][rec.seed].append(rec)
    return comparisons


def select(records: list[RunRecord], rule: Any) -> RunRecord | None:
    """The best finished trial under `rule`, looking at validation metrics only; ties go to the lowest trial."""
    ok = [r for r in records if r.ok]
    if not ok:
        return None
    return max(ok, key=lambda r: (*rule.key(r), -r.trial))


def newest_version(by_seed: BySeed) -> tuple[BySeed, int, int]:
    """Only the runs of the method's newest version (a new version changes what the method does, so its runs
    and an older version's are never mixed or selected between), that version, and how many older runs were
    left out."""
    newest = max(r.spec.method_version for runs in by_seed.values() for r in runs)
    kept = {seed: [r for r in runs if r.spec.method_version == newest] for seed, runs in by_seed.items()}
    left_out = sum(len(runs) for runs in by_seed.values()) - sum(len(runs) for runs in kept.values())
    return {seed: runs for seed, runs in kept.items() if runs}, newest, left_out


def method_runs(by_seed: BySeed, selection: Any, searched: list[int], planned: int = 1) -> MethodRuns:
    """A method's runs of its newest version and the selected run per seed: without a search, the rule's pick among
    each seed's trials; with one, the trial the rule picks on the search seeds, over every seed, once all `planned`
    trials have run there and the pick has run on every seed the defaults ran on.  Before, its defaults: a pick
    among some trials is not the search's, and a pick on the search seeds alone is neither powered nor comparable
    with rows over every seed."""
    kept, version, superseded = newest_version(by_seed)
    everything = [r for _, runs in sorted(kept.items()) for r in runs]
    failed = [r for r in everything if not r.ok]
    if not searched:
        chosen = [c for c in (select(runs, selection) for _, runs in sorted(kept.items())) if c is not None]
        return MethodRuns(kept, version, superseded, chosen, failed)
    progress = SearchProgress(trials_searched(everything, searched, planned), planned, searched)
    if progress.complete:
        pick = picked_trial(everything, searched, selection)
        progress = replace(progress, pick=pick, pending_seeds=pick_pending(everything, pick))
    # no pick when every trial failed on the search seeds: the defaults, on the seeds they finished, are all it has
    trial = DEFAULT_TRIAL if progress.pending or progress.pick is None else progress.pick
    return MethodRuns(kept, version, superseded, trial_runs(everything, trial), failed, progress)


def differing_settings(comparisons: list[dict[str, Any]]) -> list[str]:
    """The comparison settings that take more than one value in a store (they name its tables apart)."""
    keys = [k for k in COMPARISON_FIELDS if k not in ("dataset", "task")]
    return [k for k in keys if len({canonical_json(c.get(k)) for c in comparisons}) > 1]


# ------------------------------------------------------------------ the board


def build(
    store_dir: Path | str, rule: str = "val_acc", access: DataAccess | None = None, defaults_only: bool = False
) -> Board:
    """Aggregate the store into leaderboard tables, one per comparison.

    A table holds only runs whose comparison settings (data, budget, resolution,
    backbone, weights, augmentation, VLM, pool, dataset options) are identical;
    within it, the selection rule picks one trial per method and seed (or, with a
    search, one trial per method on the search seeds).  `access`: data roots and
    intersectional attributes to read labels back with (`readback`), for accuracy
    at equal fairness and intersectional gaps; without it those are not made and
    the tables' notes say so.  `defaults_only`: the board of every method at its defaults (trial 0), as if no
    search had run.
    """
    selection = final_rule(rule, get_rule)
    store = ResultStore(store_dir, create=False)
    comparisons = read_comparisons(store, defaults_only)
    named_by = differing_settings([c.settings for c in comparisons.values()])
    order = sorted(comparisons, key=lambda k: (comparisons[k].settings["dataset"], comparisons[k].settings["task"], k))
    stored = StoredRuns(store, StoredAnalyses(access))
    tables = [
        build_table(key, comparisons[key], named_by, context(comparisons[key], selection, stored)) for key in order
    ]
    if defaults_only:  # one trial per method and seed: the rule has nothing to pick, and the board says so
        return Board(DEFAULT, [replace(t, selection_rule=DEFAULTS_BOARD) for t in tables])
    return Board(rule, tables)


DEFAULTS_BOARD = f"{DEFAULT}: every method at its defaults (trial 0), as if no search had run"


def plain_board(store_dir: Path | str, rule: str = "val_acc") -> dict[str, Any]:
    """The board as its leaderboard.json would hold it, built now from the store (the scripts' `STORE:RULE`);
    `rule` 'defaults' (or 'default') is the board of every method at its defaults."""
    defaults = rule in ("defaults", DEFAULT)
    return json.loads(to_json(build(store_dir, "val_acc" if defaults else rule, defaults_only=defaults)))


def context(comparison: Comparison, selection: Any, stored: StoredRuns) -> Context:
    searched = search_seeds(comparison.records)
    named = regimes(selection, get_rule) if searched else []
    return Context(
        stored,
        Paired(stored),
        selection,
        searched,
        named,
        planned_trials(comparison.records),
        oracle_runs_final(comparison.records),
    )


def build_table(key: str, comparison: Comparison, named_by: list[str], ctx: Context) -> Table:
    runs = {
        m: method_runs(comparison.methods[m], ctx.selection, ctx.search_seeds, ctx.planned_trials)
        for m in sorted(comparison.methods)
    }
    rows = compare_rows([build_row(method, r, ctx) for method, r in runs.items()], runs, ctx)
    settings = comparison.settings
    preparations = shared_preparations([c.vlm for r in runs.values() for c in r.ok])
    return Table(
        comparison_id=key,
        dataset=settings["dataset"],
        task=settings["task"],
        budget=(settings.get("budget") or {}).get("name", "?"),
        comparison=settings,
        distinguished_by={k: settings.get(k) for k in named_by},
        selection_rule=f"{ctx.selection.name}: {ctx.selection.description}",
        shared_preparation=preparations,
        rows=rows,
        rankings=rankings(rows, ctx.paired, lambda row: by_seed(runs[row.method].ok)),
        pareto_fronts=pareto_fronts(rows),
        hardware=table_hardware(rows, {m: r.ok for m, r in runs.items()}),
        banner=banner(settings.get("budget") or {}, max((r.seeds for r in rows if r.ok), default=0)),
        seed_note=seed_note(rows),
        search=search_protocol(comparison, ctx),
        stage_note=stage_note(rows),
        verdict=verdict(rows),
        ablation_verdict=ablation_verdict(rows),
        **table_analyses(rows, {m: r.ok for m, r in runs.items()}, ctx.stored),
    )


def search_protocol(comparison: Comparison, ctx: Context) -> SearchProtocol | None:
    if not ctx.search_seeds:
        return None
    return SearchProtocol(ctx.search_seeds, list(range(ctx.planned_trials)), [name for name, _, _ in ctx.regimes])


def build_row(method: str, runs: MethodRuns, ctx: Context) -> Row:
    """A method's row: its runs, the selected trial per seed with its compute, test metrics over seeds, its flags and
    (with a search) its selection regimes."""
    crossed = ctx.paired.crossed_mean(runs.ok) if len(runs.ok) > 1 else None
    summaries = {m: summary(runs.ok, m, ctx.stored, crossed) for m in SUMMARY_METRICS}
    return Row(
        **run_fields(method, runs),
        **selection_fields(runs.ok),
        **summaries,
        **seed_fields(runs.ok, ctx.stored, crossed is not None),
        hardware=list(machines(runs.ok)),
        isolation=isolation(runs.ok or runs.failed),
        flags=row_flags(runs.ok, ctx.stored, summaries, runs.search, attempted=runs.by_seed, every_run=runs.all),
        regimes=regime_results(runs, ctx) if ctx.search_seeds and runs.ok else None,
        search_pending=runs.pending,
        **row_analyses(runs.ok, ctx.stored),
        mechanisms=mechanisms(runs.ok),
    )


def run_fields(method: str, runs: MethodRuns) -> dict[str, Any]:
    """What the method is and which of its runs the row stands for (metadata from its first finished run)."""
    first = (runs.ok or runs.failed)[0]
    return dict(
        method=method,
        status="ok" if runs.ok else "failed",
        seeds=len(runs.ok),
        runs=sum(len(v) for v in runs.by_seed.values()),
        method_version=runs.version,
        superseded_runs=runs.superseded,
        failed_runs=[FailedRun(r.run_id, r.error or "") for r in runs.failed],
        labels_used=first.labels_used,
        tier=information_tier(first.supervision),
        variant=runs.ok[0].variant if runs.ok else None,
        description=first.method_info.description,
        citation=first.method_info.citation,
        ablation_of=first.method_info.ablation_of,
    )


def selection_fields(ok: list[RunRecord]) -> dict[str, Any]:
    """The selected trials, their budget reports and their mean compute."""
    return dict(
        selected=[SelectedRun(c.seed, c.trial, c.run_id, c.spec.hparams) for c in ok],
        budget_report=[c.budget_report for c in ok],
        steps=mean_of([c.budget_report.get("steps") for c in ok]),
        forward_samples=mean_of([c.budget_report.get("forward_samples") for c in ok]),
        fit_time_s=mean_of([c.budget_report.get("wall_time_s") for c in ok]),
    )


def seed_fields(ok: list[RunRecord], stored: StoredRuns, crossed: bool) -> dict[str, Any]:
    """How the intervals were made, the per-group means and the per-seed values."""
    return dict(
        interval_method=interval_note(ok, stored, crossed),
        per_group=per_group(ok),
        per_seed={m: {c.seed: c.test_metric(m) for c in ok} for m in ABLATION_METRICS},
    )


def interval_note(ok: list[RunRecord], stored: StoredRuns, crossed: bool) -> str | None:
    if not ok:
        return None
    if len(ok) > 1:
        return INTERVAL_NOTE["crossed" if crossed else "seeds"]
    return INTERVAL_NOTE["bootstrap" if stored.intervals(ok[0]) is not None else "none"]


def summary(ok: list[RunRecord], metric: str, stored: StoredRuns, crossed: dict | None = None) -> MetricSummary:
    """The metric over the selected runs (`summarise`); over several seeds with stored predictions, the interval is
    the crossed bootstrap's over seeds and the shared test rows (``crossed``: `crossed_mean_of` of the runs),
    widened to hold the mean of the recorded values."""
    s = summarise([c.test_metric(metric) for c in ok], [stored.interval(c, metric) for c in ok])
    interval = (crossed or {}).get("metrics", {}).get(metric, {}).get("interval") if s.n > 1 else None
    if interval is None or interval[0] is None:
        return s
    return replace(s, interval=[min(interval[0], s.mean), max(interval[1], s.mean)])


def per_group(chosen: list[RunRecord]) -> list[GroupMetrics]:
    """Per-sensitive-group test metrics, averaged over the selected runs of each seed."""
    values: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for rec in chosen:
        for g in rec.test_groups:
            for k in ("n", "acc", "tpr", "fpr", "selection_rate"):
                values[g["group"]][k].append(g.get(k))
    return [
        GroupMetrics(
            group,
            int(np.mean(v["n"])),
            *(mean_of(v[k]) for k in ("acc", "tpr", "fpr", "selection_rate")),
        )
        for group, v in values.items()
    ]


def shared_preparations(vlm_infos: list[dict[str, Any] | None]) -> list[SharedPreparation]:
    """One shared preparation per encoder the table's runs read (runs that loaded none are left out)."""
    by_encoder: dict[Any, list[dict[str, Any]]] = {}
    for info in vlm_infos:
        if (info or {}).get("report"):
            by_encoder.setdefault(info.get("id"), []).append(info)
    return [shared_preparation(infos) for infos in by_encoder.values()]


def shared_preparation(infos: list[dict[str, Any]]) -> SharedPreparation:
    """An encoder's preparation as its runs recorded it.  A pretrained encoder with cached embeddings records the
    arrays it embedded (fingerprint -> images, seconds): their union over the runs, each array once, is the
    preparation's cost; an encoder trained here records its one training."""
    report = infos[0]["report"]
    arrays = {k: v for info in infos for k, v in (info["report"].get("arrays") or {}).items()}
    samples = sum(a["images"] for a in arrays.values()) if arrays else report.get("samples")
    seconds = round(sum(a["seconds"] for a in arrays.values()), 2) if arrays else report.get("train_time_s")
    encoder, licence = infos[0].get("id"), (infos[0].get("provenance") or {}).get("licence")
    if arrays:
        description = (
            f"Shared preparation: encoder {encoder}, pretrained elsewhere (on {report.get('trained_on')}"
            + (f"; licence: {licence}" if licence else "")
            + f"), embedded {samples} images once each in {seconds} s, cached and read by every run of this table "
            "that uses it; its cost is not in their budgets."
        )
    else:
        description = (
            f"Shared preparation: VLM {encoder} trained on {report.get('trained_on')}; its captions name "
            f"{', '.join(report.get('captions_name') or [])}; {samples} image-caption samples, {seconds} s. Every "
            "run of a VLM method reads it; its cost is not in their budgets."
        )
    return SharedPreparation(
        encoder=encoder,
        trained_on=report.get("trained_on"),
        captions_name=report.get("captions_name"),
        samples=samples,
        train_time_s=seconds,
        zero_shot=report.get("zero_shot"),
        description=description,
    )


# ------------------------------------------------------------------ selection regimes of a search


def regime_results(runs: MethodRuns, ctx: Context) -> list[RegimeResult]:
    """The defaults and each regime's pick on the search seeds, over the seeds that trial ran, minus the defaults;
    only the defaults while the method's search has trials left to run. A regime that picks the trial of an earlier
    one says so (`same_as`) instead of testing the same runs again."""
    default = trial_runs(runs.all, DEFAULT_TRIAL)
    named = ctx.regimes[:1] if runs.searching else ctx.regimes
    results = [regime_result(name, description, rule, runs, default, ctx) for name, description, rule in named]
    tested: dict[int | None, str] = {}  # trial -> the first regime that tests it against the defaults
    for i, g in enumerate(results):
        if g.minus_default is not None and g.trial in tested:
            results[i] = replace(g, same_as=tested[g.trial])
        elif g.minus_default is not None:
            tested[g.trial] = g.regime
    return results


def regime_result(
    name: str, description: str, rule: Any, runs: MethodRuns, default: list[RunRecord], ctx: Context
) -> RegimeResult:
    """One regime's pick. A rule's pick runs on every seed the defaults ran (`fairbench run`'s final seeds); until it
    has, its difference to the defaults is not tested. So does the test oracle's when the plan names it in
    `final_selection`; otherwise it runs on the final seeds only when a rule picks it too, and stands on the search
    seeds alone, saying so by its seed count."""
    trial = DEFAULT_TRIAL if rule is None else picked_trial(runs.all, ctx.search_seeds, rule)
    chosen = trial_runs(runs.all, trial) if trial is not None else []
    crossed = ctx.paired.crossed_mean(chosen) if len(chosen) > 1 else None  # the same intervals as the rows'
    planned = rule is not None and (name != ORACLE or ctx.oracle_final)
    not_run_on = pick_pending(runs.all, trial) if planned else []
    return RegimeResult(
        regime=name,
        description=description,
        trial=trial,
        seeds=[r.seed for r in chosen],
        metrics={m: summary(chosen, m, ctx.stored, crossed) for m in REGIME_METRICS},
        minus_default=None  # the defaults themselves, a regime that picks them, a pick still to run: nothing to test
        if rule is None or not chosen or trial == DEFAULT_TRIAL or not_run_on
        else ctx.paired.difference(by_seed(chosen), by_seed(default), REGIME_METRICS),
        upper_bound=name == ORACLE,
        not_run_on=not_run_on,
    )


def holm_regimes(rows: list[Row]) -> list[Row]:
    """Holm's correction of regime − default per (regime, metric) over the table's methods that test the regime
    (a method still searching reports only its defaults; a regime that picks an earlier one's trial takes that
    one's corrected difference)."""
    searched = [r for r in rows if r.regimes]
    corrected: dict[tuple[str, str], dict[str, Any]] = {}
    for name in dict.fromkeys(g.regime for r in searched for g in r.regimes):
        family = {
            r.method: g.minus_default
            for r in searched
            for g in r.regimes
            if g.regime == name and g.minus_default and not g.same_as
        }
        corrected.update({(m, name): d for m, d in holm_columns(family, REGIME_METRICS).items()})
    return [with_regime_holm(r, corrected) if r.regimes else r for r in rows]


def with_regime_holm(row: Row, corrected: dict[tuple[str, str], dict[str, Any]]) -> Row:
    regimes_ = [
        replace(g, minus_default=corrected.get((row.method, g.same_as or g.regime), g.minus_default))
        for g in row.regimes
    ]
    return replace(row, regimes=regimes_)


# ------------------------------------------------------------------ comparisons between the rows of a table


def by_seed(runs: list[RunRecord]) -> dict[int, RunRecord]:
    return {r.seed: r for r in runs}


def compare_rows(rows: list[Row], runs: dict[str, MethodRuns], ctx: Context) -> list[Row]:
    """The rows with their paired differences against erm and of each system against its ablations (Holm per
    paired table and metric), and their regimes' differences Holm-corrected."""
    ok = {r.method: r for r in rows if r.ok}
    chosen = {m: by_seed(runs[m].ok) for m in ok}
    reference = REFERENCE_METHOD if REFERENCE_METHOD in ok else None
    vs_erm = {  # a tuned row against erm's defaults (or the reverse) is not compared: `verdict.SEARCH_PENDING`
        m: ctx.paired.difference(chosen[m], chosen[reference], COMPARED_METRICS)
        for m in ok
        if reference and m != reference and tuned_alike(ok[m], ok[reference])
    }
    ablations = {
        m: ctx.paired.difference(chosen[r.ablation_of], chosen[m], ABLATION_METRICS)
        for m, r in ok.items()
        if r.ablation_of in ok and tuned_alike(r, ok[r.ablation_of])
    }
    pairs = paired_runs(ok, runs, chosen, reference, vs_erm, ablations)
    vs_erm = holm_columns(vs_erm, COMPARED_METRICS)
    ablations = holm_columns(ablations, ABLATION_METRICS)
    compared = [
        replace(
            r,
            vs_erm=vs_erm.get(r.method),
            system_vs_ablation=ablations.get(r.method),
            flags=with_flag(r.flags, cross_hardware(pairs[r.method])),
        )
        if r.ok
        else r
        for r in rows
    ]
    return holm_regimes(compared)


def paired_runs(
    ok: dict[str, Row],
    runs: dict[str, MethodRuns],
    chosen: dict[str, dict[int, RunRecord]],
    reference: str | None,
    vs_erm: dict[str, Any],
    ablations: dict[str, Any],
) -> dict[str, dict[str, tuple[dict[int, RunRecord], dict[int, RunRecord]]]]:
    """Per finished row, the two run sets (by seed) of each paired difference it shows: against erm, its system
    against it (an ablation's row), each regime against the defaults."""
    pairs: dict[str, dict[str, tuple[dict[int, RunRecord], dict[int, RunRecord]]]] = {m: {} for m in ok}
    for m in vs_erm:
        pairs[m]["against erm"] = (chosen[m], chosen[reference])
    for m in ablations:
        pairs[m][f"{ok[m].ablation_of} − {m}"] = (chosen[ok[m].ablation_of], chosen[m])
    for m, row in ok.items():
        default = by_seed(trial_runs(runs[m].all, DEFAULT_TRIAL))
        for g in row.regimes or []:
            if g.minus_default:
                pairs[m][f"{g.regime} − default"] = (by_seed(trial_runs(runs[m].all, g.trial)), default)
    return pairs


def stage_note(rows: list[Row]) -> str | None:
    """With a search still running: how many finished rows are tuned and how many still at their defaults, which
    the ranks and the Pareto fronts set side by side (the comparisons with erm and between a system and its ablation
    wait until both are tuned alike)."""
    searched = [r for r in rows if r.ok and r.regimes]
    waiting = [r.method for r in searched if r.search_pending]
    if not waiting or len(waiting) == len(searched):
        return None
    return (
        f"the search is still running: {len(waiting)} of {len(searched)} methods are at their defaults "
        f"({', '.join(waiting)}; flagged searching) beside tuned ones; the ranks and the Pareto fronts set them side "
        "by side, while the comparisons against erm and against an ablation take only rows tuned alike"
    )


def seed_note(rows: list[Row]) -> str | None:
    most = max((r.seeds for r in rows if r.ok), default=0)
    if most >= 3:
        return None
    return f"at most {most} seed(s): across-seed intervals and paired comparisons are not meaningful below 3 seeds"


# ------------------------------------------------------------------ files


def write(
    store_dir: Path | str,
    out_dir: Path | str | None = None,
    rule: str = "val_acc",
    access: DataAccess | None = None,
    defaults_only: bool = False,
) -> dict[str, Path]:
    """Write leaderboard.md, leaderboard.csv and leaderboard.json next to each other (`defaults_only`: see `build`)."""
    out = Path(out_dir or store_dir)
    foreign = foreign_exports(out)
    if foreign:
        raise ConfigError(
            f"{foreign[0]} was not written by a fairbench leaderboard and would be replaced; nothing was changed: pass "
            "--out a folder of its own, or move the file"
        )
    board = build(store_dir, rule, access, defaults_only)
    out.mkdir(parents=True, exist_ok=True)
    return write_exports(board, out)
