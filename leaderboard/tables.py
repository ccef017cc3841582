"""Leaderboard tables built from the result store (never from in-memory state), as a typed `model.Board`.

One table per comparison (runs whose comparison settings agree): one row per
method, the trial chosen per seed by a named validation-only selection rule,
test metrics as mean ± std over seeds, paired differences against erm and of
each system against its own ablations, and mean ranks.  Failed runs are shown
as failed, not dropped.  `render` writes the board as Markdown, CSV and JSON.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fairfacebench.leaderboard.model import (
    ABLATION_METRICS,
    COMPARED_METRICS,
    SUMMARY_METRICS,
    Board,
    FailedRun,
    GroupMetrics,
    MetricSummary,
    PairedDifference,
    Ranking,
    Row,
    SelectedRun,
    SharedPreparation,
    Table,
    defined,
)
from fairfacebench.leaderboard.render import write_exports
from fairfacebench.metrics.compare import (
    HIGHER_IS_BETTER,
    clip_interval,
    critical_difference,
    mean_ranks,
    paired_difference,
    t_interval,
)
from fairfacebench.metrics.fairness import METRIC_NAMES, compute_metrics
from fairfacebench.plugins import registry
from fairfacebench.record import RunRecord
from fairfacebench.spec import COMPARISON_FIELDS, canonical_json, spec_hash
from fairfacebench.store import PREDICTIONS, ResultStore

REFERENCE_METHOD = "erm"
INTERVAL_NOTE = {
    "seeds": "± is the std over seeds (ddof=1); [lo, hi] the 95% Student-t interval of the mean over seeds",
    "bootstrap": "[lo, hi] is the 95% percentile bootstrap interval over test rows of the single seed "
    "(1,000 multinomial resamples of the confusion counts)",
}
BLOCK_CAVEAT = "the blocks share runs (five metrics of one seed), so the Nemenyi critical difference is indicative"

BySeed = dict[int, list[RunRecord]]


@dataclass
class Comparison:
    """The runs of one comparison as read from the store: method -> seed -> runs, in store order."""

    settings: dict[str, Any]
    methods: dict[str, BySeed] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))


@dataclass(frozen=True)
class MethodRuns:
    """One method's runs of its newest version in a comparison, and the trial selected per seed."""

    by_seed: BySeed
    version: int
    superseded: int
    ok: list[RunRecord]  # the selected run of each seed that finished, by seed
    failed: list[RunRecord]


# ------------------------------------------------------------------ reading and selecting runs


def get_rule(name: str) -> Any:
    """An installed selection rule by name, or a member of an installed family such as `val_acc@val_eod_max<=EPS`."""
    return registry().selection_rule(name)


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


def read_comparisons(store: ResultStore) -> dict[str, Comparison]:
    """Every finished record of the store, grouped by comparison id, method and seed."""
    comparisons: dict[str, Comparison] = {}
    for rec in store.records():
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


def method_runs(by_seed: BySeed, selection: Any) -> MethodRuns:
    kept, version, superseded = newest_version(by_seed)
    chosen = [select(runs, selection) for _, runs in sorted(kept.items())]
    failed = [r for runs in kept.values() for r in runs if not r.ok]
    return MethodRuns(kept, version, superseded, [c for c in chosen if c is not None], failed)


def differing_settings(comparisons: list[dict[str, Any]]) -> list[str]:
    """The comparison settings that take more than one value in a store (they name its tables apart)."""
    keys = [k for k in COMPARISON_FIELDS if k not in ("dataset", "task")]
    return [k for k in keys if len({canonical_json(c.get(k)) for c in comparisons}) > 1]


# ------------------------------------------------------------------ the board


def build(store_dir: Path | str, rule: str = "val_acc") -> Board:
    """Aggregate the store into leaderboard tables, one per comparison.

    A table holds only runs whose comparison settings (data, budget, resolution,
    backbone, weights, augmentation, VLM, pool, dataset options) are identical;
    within it, the selection rule picks one trial per method and seed.
    """
    selection = get_rule(rule)
    comparisons = read_comparisons(ResultStore(store_dir, create=False))
    named_by = differing_settings([c.settings for c in comparisons.values()])
    order = sorted(comparisons, key=lambda k: (comparisons[k].settings["dataset"], comparisons[k].settings["task"], k))
    return Board(rule, [build_table(key, comparisons[key], named_by, selection) for key in order])


def build_table(key: str, comparison: Comparison, named_by: list[str], selection: Any) -> Table:
    runs = {method: method_runs(comparison.methods[method], selection) for method in sorted(comparison.methods)}
    rows, ranking = compare_rows([build_row(method, r) for method, r in runs.items()])
    settings = comparison.settings
    preparations = [shared_preparation(c.vlm) for r in runs.values() for c in r.ok]
    return Table(
        comparison_id=key,
        dataset=settings["dataset"],
        task=settings["task"],
        budget=(settings.get("budget") or {}).get("name", "?"),
        comparison=settings,
        distinguished_by={k: settings.get(k) for k in named_by},
        selection_rule=f"{selection.name}: {selection.description}",
        shared_preparation=unique([p for p in preparations if p is not None]),
        rows=rows,
        ranking=ranking,
        seed_note=seed_note(rows),
    )


def build_row(method: str, runs: MethodRuns) -> Row:
    """A method's row: its runs, the selected trial per seed with its compute, and test metrics over seeds."""
    return Row(
        **run_fields(method, runs),
        **selection_fields(runs.ok),
        **{
            m: summarise([c.test_metric(m) for c in runs.ok], [c.test_interval(m) for c in runs.ok])
            for m in SUMMARY_METRICS
        },
        **seed_fields(runs.ok),
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


def seed_fields(ok: list[RunRecord]) -> dict[str, Any]:
    """How the intervals were made, the per-group means, the per-seed values and why predictions are degenerate."""
    return dict(
        interval_method=(INTERVAL_NOTE["seeds"] if len(ok) > 1 else INTERVAL_NOTE["bootstrap"]) if ok else None,
        per_group=per_group(ok),
        per_seed={m: {c.seed: c.test_metric(m) for c in ok} for m in ABLATION_METRICS},
        degenerate=sorted({reason for c in ok for reason in degenerate(c)}),
    )


def summarise(values: list[float | None], bootstrap: list[list | None]) -> MetricSummary:
    """Across-seed mean, std and 95% t-interval; with one seed, the run's bootstrap interval."""
    defined_values = [v for v in values if defined(v)]
    if not defined_values:
        return MetricSummary(math.nan, math.nan, 0, None)
    if len(defined_values) > 1:
        s = t_interval(defined_values)
        return MetricSummary(s["mean"], s["std"], s["n"], clip_interval(s["ci95"]))
    return MetricSummary(defined_values[0], math.nan, 1, bootstrap[0] if bootstrap else None)


def mean_of(values: list[float | None]) -> float:
    kept = [v for v in values if defined(v)]
    return float(np.mean(kept)) if kept else math.nan


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


def shared_preparation(vlm_info: dict[str, Any] | None) -> SharedPreparation | None:
    """What a comparison's VLM was trained on, what its captions name, its samples and time (None: not trained here)."""
    report = (vlm_info or {}).get("report")
    if not report:
        return None
    return SharedPreparation(
        encoder=vlm_info.get("id"),
        trained_on=report.get("trained_on"),
        captions_name=report.get("captions_name"),
        samples=report.get("samples"),
        train_time_s=report.get("train_time_s"),
        zero_shot=report.get("zero_shot"),
    )


def unique(items: list) -> list:
    """The items in order, each once (items may be unhashable)."""
    out: list = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


# ------------------------------------------------------------------ degenerate predictors


def degenerate(record: RunRecord) -> list[str]:
    """Why a run's test predictions are degenerate: one class for a whole group, or for everyone, or accuracy
    no better than always predicting the majority class (a method that has not learned the task at this budget
    looks "fair" by its small gaps; it is flagged and kept off the Pareto front)."""
    groups = record.test_groups
    rates = [(g["group"], g.get("selection_rate")) for g in groups if g.get("selection_rate") is not None]
    constant = [name for name, rate in rates if rate in (0.0, 1.0)]
    if rates and len(constant) == len(rates) and len({rate for _, rate in rates}) == 1:
        return ["one class for everyone"]
    chance = at_chance(record.test_metric("acc"), groups)
    return [f"one class for all of group {name}" for name in constant] + ([chance] if chance else [])


def at_chance(acc: float | None, groups: list[dict]) -> str | None:
    """'at chance (test accuracy ..., majority class ...)' when a binary task's test accuracy is below the
    majority-class rate plus two binomial standard errors of it (n test images), else None."""
    counts = [(g.get("n"), g.get("positives")) for g in groups]
    if acc is None or not counts or any(n is None or p is None for n, p in counts):
        return None
    n = sum(c[0] for c in counts)
    positives = sum(c[1] for c in counts)
    if n == 0:
        return None
    majority = max(positives, n - positives) / n
    if acc < majority + 2 * math.sqrt(majority * (1 - majority) / n):
        return f"at chance (test accuracy {acc:.3f}, majority class {majority:.3f})"
    return None


# ------------------------------------------------------------------ comparisons between the rows of a table


def compare_rows(rows: list[Row]) -> tuple[list[Row], Ranking]:
    """The rows with their paired differences against erm, of each system against its ablations over seeds,
    and their mean ranks over (metric, seed) blocks; the ranking."""
    ok = [r for r in rows if r.ok]
    reference = next((r for r in ok if r.method == REFERENCE_METHOD), None)
    by_name = {r.method: r for r in ok}
    seeds = common_seeds(ok)
    blocks = rank_blocks(ok, seeds)
    ranks = dict(zip(by_name, mean_ranks(blocks) if blocks and len(ok) > 1 else [math.nan] * len(ok)))
    compared = [with_comparisons(r, reference, by_name, ranks[r.method]) if r.ok else r for r in rows]
    return compared, ranking(len(ok), len(blocks), len(seeds))


def common_seeds(rows: list[Row]) -> list[int]:
    """The seeds every row has a selected run of."""
    return sorted(set.intersection(*[set(r.per_seed["acc"]) for r in rows])) if rows else []


def ranking(methods: int, blocks: int, seeds: int) -> Ranking:
    return Ranking(
        blocks=blocks,
        block_rule=f"each of {list(COMPARED_METRICS)} on each of the {seeds} seed(s) every method ran; "
        "rank 1 is best; ties share the mean rank",
        critical_difference=critical_difference(methods, blocks) if 2 <= methods <= 20 and blocks else None,
        caveat=BLOCK_CAVEAT,
    )


def with_comparisons(row: Row, reference: Row | None, by_name: dict[str, Row], rank: float) -> Row:
    """A finished row with its differences against the reference (erm) and of its system against it, and its rank."""
    system = by_name.get(row.ablation_of or "")
    return replace(
        row,
        vs_erm=None if reference is None or row is reference else differences(row, reference, COMPARED_METRICS),
        system_vs_ablation=None if system is None else differences(system, row, ABLATION_METRICS),
        mean_rank=float(rank),
    )


def differences(minuend: Row, subtrahend: Row, metrics: tuple[str, ...]) -> dict[str, PairedDifference]:
    """minuend − subtrahend of each metric over the seeds both ran."""
    return {m: PairedDifference(**paired_difference(minuend.per_seed[m], subtrahend.per_seed[m])) for m in metrics}


def rank_blocks(ok: list[Row], seeds: list[int]) -> list[tuple[np.ndarray, bool]]:
    """One block per (compared metric, seed every row ran): the rows' values and whether higher is better."""
    return [
        (np.array([np.nan if r.per_seed[m].get(s) is None else r.per_seed[m][s] for r in ok]), m in HIGHER_IS_BETTER)
        for m in COMPARED_METRICS
        for s in seeds
    ]


def seed_note(rows: list[Row]) -> str | None:
    most = max((r.seeds for r in rows if r.ok), default=0)
    if most >= 3:
        return None
    return f"at most {most} seed(s): across-seed intervals and paired comparisons are not meaningful below 3 seeds"


# ------------------------------------------------------------------ files


def write(store_dir: Path | str, out_dir: Path | str | None = None, rule: str = "val_acc") -> dict[str, Path]:
    """Write leaderboard.md, leaderboard.csv and leaderboard.json next to each other."""
    board = build(store_dir, rule)
    out = Path(out_dir or store_dir)
    out.mkdir(parents=True, exist_ok=True)
    return write_exports(board, out)
