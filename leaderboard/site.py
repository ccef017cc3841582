"""The static leaderboard site: an index of leaderboards, one page per method, SVG plots, JSON and CSV.

Built from the result store through `tables.build` (never from in-memory
state).  Every string that comes from a plugin or a config reaches the pages
through Jinja2 with autoescaping on, pages and plots get slug file names, and
the only script is the packaged sort.js, so a plugin named
``<script>alert(1)</script>`` is shown as text.  The site needs no network:
it works from file:// and from any static host.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from fairfacebench import __version__
from fairfacebench.errors import ConfigError
from fairfacebench.flags import Flag
from fairfacebench.leaderboard import plots
from fairfacebench.leaderboard.model import (
    ABLATION_METRICS,
    COMPARED_METRICS,
    GROUP_METRICS,
    INTERSECTIONAL_METRICS,
    REGIME_METRICS,
    TABLE_METRICS,
    Board,
    HardwareRuns,
    MetricSummary,
    ParetoFront,
    Row,
    SharedPreparation,
    Table,
    defined,
)
from fairfacebench.leaderboard.render import (
    EQUAL_FAIRNESS,
    ISOLATION_NOTE,
    MECHANISM_HEADERS,
    MECHANISMS_CAPTION,
    ORACLE_TEXT,
    PAIRED_CAPTION,
    REGIME_CAPTION,
    SENSITIVE_AT_INFERENCE,
    calibration_cells,
    calibration_headers,
    cells_text,
    count_text,
    critical_differences,
    difference_text,
    equal_fairness_cells,
    equal_fairness_headers,
    mechanism_cells,
    order_rows,
    rank_text,
    regime_difference_text,
    regime_name,
    row_transfer_cells,
    search_text,
    shared_flags,
    summary_text,
    table_title,
    tau_text,
    tolerance_text,
    transfer_caption,
    transfer_headers,
    transfer_rows,
    value_text,
    verdict_lines,
    write_exports,
)
from fairfacebench.leaderboard.tables import build
from fairfacebench.metrics.compare import HIGHER_IS_BETTER
from fairfacebench.readback import DataAccess
from fairfacebench.record import RunRecord
from fairfacebench.spec import RunSpec
from fairfacebench.store import ResultStore, record_json

SPREAD_METRICS = ("acc", "eod_max")
STATIC_FILES = ("sort.js", "style.css")
MARKER = ".fairbench-site.json"  # written by every build: the files it made, the only ones a rebuild may delete


# ------------------------------------------------------------------ what the templates show


@dataclass(frozen=True)
class Cell:
    """A table cell's display text and its sort value (empty: sorts last)."""

    text: str
    value: str

    @property
    def parts(self) -> tuple[str, str]:
        """'mean ± std' and '[lo, hi]', so a narrow column wraps between them and nowhere else."""
        head, bracket, rest = self.text.partition(" [")
        return head, (bracket.strip() + rest) if bracket else ""


@dataclass(frozen=True)
class TextTable:
    """A captioned table of display text (the analyses beyond the columns)."""

    caption: str
    headers: list[str]
    rows: list[list[Any]]


@dataclass(frozen=True)
class AnalysesView:
    """A table's analyses beyond its columns, on the index: accuracy at equal fairness (table, orders, plot),
    calibration, intersectional cells and gaps, in-domain vs transfer, and the notes."""

    equal_fairness: TextTable | None
    orders: TextTable | None
    equal_fairness_plot: str | None
    calibration: TextTable | None
    intersectional_cells: list[str]
    intersectional: TextTable | None
    transfer: TextTable | None
    notes: list[str]


@dataclass(frozen=True)
class RowView:
    method: str
    page: str
    variant: str | None
    labels_used: str
    requires: str
    tier: str
    status: str
    seeds: int
    failed: int
    cells: list[Cell]
    isolation: str
    flags: list[Flag]
    vs_erm: list[str] | None
    ablation_label: str
    system_vs_ablation: list[str] | None
    forward_samples: Cell
    fit_time_s: Cell


@dataclass(frozen=True)
class RankView:
    method: str
    tier: str
    ranks: list[str]


@dataclass(frozen=True)
class RegimeView:
    method: str
    regime: str
    description: str
    upper_bound: bool
    trial: str
    seeds: int
    values: list[str]
    minus_default: list[str]


@dataclass(frozen=True)
class TableView:
    id: str
    title: str
    dataset: str
    task: str
    selection_rule: str
    budget: str
    interval_notes: list[str]
    shared_preparation: list[SharedPreparation]
    banner: str | None
    banner_class: str
    seed_note: str | None
    stage_note: str | None
    hardware: list[HardwareRuns]
    pareto_fronts: list[ParetoFront]
    compared_metrics: list[str]
    ablation_metrics: list[str]
    paired_caption: str
    verdict: list[str]
    regime_caption: str
    oracle_text: str
    search: str | None
    ranks: list[RankView]
    critical_differences: str
    regime_metrics: list[str]
    regimes: list[RegimeView]
    flags: list[tuple[str, str, str]]
    rows: list[RowView]
    tradeoff: str
    spread: str | None
    analyses: AnalysesView


@dataclass(frozen=True)
class TrialView:
    seed: int
    trial: int
    run_id: str
    record: str
    commit: str
    config: str
    hparams: list[tuple[str, str]]
    metrics: list[str]


@dataclass(frozen=True)
class GroupView:
    group: str
    n: int
    values: list[str]


@dataclass(frozen=True)
class FailureView:
    run_id: str
    error: str
    traceback: str | None


@dataclass(frozen=True)
class SectionView:
    """A method's part of one leaderboard, on the method's page."""

    table: TableView
    labels_used: str
    tier: str
    variant: str | None
    isolation: str
    flags: list[Flag]
    regimes: list[RegimeView]
    selected: list[TrialView]
    per_group: list[GroupView]
    groups_plot: str | None
    failed: list[FailureView]
    equal_fairness: TextTable | None
    equal_fairness_plot: str | None
    calibration: TextTable | None
    reliability_plot: str | None
    intersectional: TextTable | None
    transfer: TextTable | None
    mechanisms: TextTable | None


@dataclass
class MethodPage:
    name: str
    page: str
    description: str
    citation: str
    requires: str
    sections: list[SectionView] = field(default_factory=list)


@dataclass(frozen=True)
class MetricColumn:
    name: str
    better: str
    definition: str


# ------------------------------------------------------------------ text and names


def slugify(text: str) -> str:
    """A file-name-safe slug; a name that had to change gets a hash suffix, so two names never share one."""
    clean = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")[:48] or "x"
    return clean if clean == text else f"{clean}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def method_page(name: str) -> str:
    return f"method-{slugify(name)}.html"


def cell(summary: MetricSummary) -> Cell:
    """Display text ('mean ± std [lo, hi]') and the sort value of one metric summary."""
    if not defined(summary.mean):
        return Cell("n/a", "")
    return Cell(summary_text(summary), repr(float(summary.mean)))


def count_cell(value: float | None, digits: int = 0) -> Cell:
    """A count (forward samples, seconds) as display text and sort value."""
    return Cell(count_text(value, digits), repr(float(value)) if defined(value) else "")


def budget_text(spec: RunSpec) -> str:
    budget = spec.budget
    steps = f"{budget.steps} optimizer steps at batch size {budget.batch_size}"
    return f"{budget.name}: {steps}, {spec.resolution} px"


def show_value(value: Any) -> str:
    """A hyperparameter value as text (strings as they are, everything else as JSON)."""
    return value if isinstance(value, str) else json.dumps(value)


def config_text(config: dict | None) -> str:
    """The resolved plan of a run, as one line of key=value pairs (JSON values)."""
    if not config:
        return "not recorded"
    return ", ".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(config.items()))


# ------------------------------------------------------------------ the index: one view per leaderboard table


def row_runs(row: Row, records: dict[str, RunRecord]) -> list[RunRecord]:
    ids = [s.run_id for s in row.selected] + [f.run_id for f in row.failed_runs]
    return [records[i] for i in ids if i in records]


def requires(row: Row, records: dict[str, RunRecord]) -> str:
    info = next((r.method_info for r in row_runs(row, records)), None)
    return (info.requires if info else "") or "-"


def row_view(row: Row, records: dict[str, RunRecord]) -> RowView:
    return RowView(
        method=row.method,
        page=method_page(row.method),
        variant=row.variant,
        labels_used=row.labels_used,
        requires=requires(row, records),
        tier=row.tier,
        status=row.status,
        seeds=row.seeds,
        failed=len(row.failed_runs),
        cells=[cell(row.summary(m)) for m in TABLE_METRICS],
        isolation=row.isolation,
        flags=row.flags,
        vs_erm=[difference_text(row.vs_erm[m]) for m in COMPARED_METRICS] if row.vs_erm else None,
        ablation_label=f"{row.ablation_of} − {row.method}",
        system_vs_ablation=[difference_text(row.system_vs_ablation[m]) for m in ABLATION_METRICS]
        if row.system_vs_ablation
        else None,
        forward_samples=count_cell(row.forward_samples),
        fit_time_s=count_cell(row.fit_time_s, 1),
    )


def table_view(table: Table, records: dict[str, RunRecord], plot_dir: Path) -> TableView:
    """What the index shows of one (dataset, task, budget) leaderboard; writes its plots."""
    slug = slugify(f"{table.dataset}-{table.task}-{table.budget}-{table.comparison_id[:8]}")
    runs = [r for row in table.rows for r in row_runs(row, records)]
    title = table_title(table)
    return TableView(
        id=slug,
        title=title,
        dataset=table.dataset,
        task=table.task,
        selection_rule=table.selection_rule,
        budget=budget_text(runs[0].spec) if runs else table.budget,
        interval_notes=table.interval_notes,
        shared_preparation=table.shared_preparation,
        banner=table.banner,
        banner_class="smoke-banner" if table.budget == "smoke" else "demonstration-banner",
        seed_note=table.seed_note,
        stage_note=table.stage_note,
        hardware=table.hardware,
        pareto_fronts=table.pareto_fronts,
        compared_metrics=list(COMPARED_METRICS),
        ablation_metrics=list(ABLATION_METRICS),
        paired_caption=PAIRED_CAPTION,
        verdict=verdict_lines(table),
        regime_caption=REGIME_CAPTION,
        oracle_text=ORACLE_TEXT,
        search=search_text(table) if table.search else None,
        ranks=rank_views(table),
        critical_differences=critical_differences(table.rankings),
        regime_metrics=list(REGIME_METRICS),
        regimes=[v for row in table.ok_rows for v in regime_views(row)],
        flags=shared_flags(table),
        rows=[row_view(row, records) for row in table.rows],
        tradeoff=tradeoff_plot(table, plot_dir / f"{slug}-tradeoff.svg", title),
        spread=spread_plot(table, plot_dir / f"{slug}-seeds.svg", title),
        analyses=analyses_view(table, plot_dir / f"{slug}-equal-fairness.svg", title),
    )


EQUAL_FAIRNESS_CAPTION = (
    f"Accuracy at equal fairness ({SENSITIVE_AT_INFERENCE}): test accuracy after post-processing to eod_max ≤ t, "
    f"and the achieved test eod_max; {EQUAL_FAIRNESS}."
)


def analyses_view(table: Table, plot: Path, title: str) -> AnalysesView:
    """What the index shows of a table's analyses; writes its equal-fairness plot (when there are numbers)."""
    ok = table.ok_rows
    fair = [r for r in ok if r.equal_fairness]
    orders = None
    if table.equal_fairness_orders:
        headers, rows = order_rows(table)
        orders = TextTable(f"Order by mean test accuracy (most accurate first). {tau_text(table)}.", headers, rows)
    calibrated = [r for r in ok if r.calibration]
    crossed = [r for r in ok if r.intersectional]
    transferred = transfer_rows(table)
    return AnalysesView(
        equal_fairness=TextTable(
            EQUAL_FAIRNESS_CAPTION, equal_fairness_headers(table), [equal_fairness_cells(r) for r in fair]
        )
        if fair
        else None,
        orders=orders,
        equal_fairness_plot=equal_fairness_plot(fair, plot, title) if fair else None,
        calibration=TextTable(
            "Calibration per group of the selected runs' test scores (over seeds).",
            calibration_headers(table),
            [calibration_cells(r) for r in calibrated],
        )
        if calibrated
        else None,
        intersectional_cells=cells_text(table) if table.intersectional else [],
        intersectional=TextTable(
            "Gaps over the intersectional cells (the left-out cells' rows not scored).",
            ["method", *INTERSECTIONAL_METRICS],
            [[r.label, *[summary_text(r.intersectional[m]) for m in INTERSECTIONAL_METRICS]] for r in crossed],
        )
        if crossed
        else None,
        transfer=TextTable(transfer_caption(ok), transfer_headers(), transferred) if transferred else None,
        notes=table.analysis_notes,
    )


def equal_fairness_plot(rows: list[Row], path: Path, title: str) -> str:
    """Every method's mean test accuracy raw and at each tolerance, one numbered line each."""
    series = {
        r.label: [
            *[(f"eod_max≤{tolerance_text(p.tolerance)}", p.acc.mean) for p in r.equal_fairness],
            ("raw", r.acc.mean),
        ]
        for r in rows
    }
    return f"plots/{plots.equal_fairness_curves(series, path, f'accuracy at equal fairness: {title}').name}"


def rank_views(table: Table) -> list[RankView]:
    """Each finished method's rank on each compared metric within its tier ('best' / 'tied' marked)."""
    by = {(k.tier, k.metric): k for k in table.rankings}
    return [
        RankView(r.method, r.tier, [rank_text(by[r.tier, m], r.method) for m in COMPARED_METRICS])
        for r in table.ok_rows
    ]


def regime_views(row: Row) -> list[RegimeView]:
    """A method's selection regimes of a search (none without one)."""
    return [
        RegimeView(
            method=row.method,
            regime=regime_name(g),
            description=g.description,
            upper_bound=g.upper_bound,
            trial="none finished" if g.trial is None else str(g.trial),
            seeds=len(g.seeds),
            values=[summary_text(g.metrics[m]) for m in REGIME_METRICS],
            minus_default=[regime_difference_text(g, m) for m in REGIME_METRICS],
        )
        for g in row.regimes or []
    ]


def tradeoff_plot(table: Table, path: Path, title: str) -> str:
    return f"plots/{plots.tradeoff(tradeoff_points(table), path, title).name}"


def tradeoff_points(table: Table) -> list[plots.Point]:
    """The accuracy-vs-eod_max points of a leaderboard table: one per finished method, with across-seed std, its
    tier and whether it is on its tier's Pareto front."""
    front = {(f.tier, m) for f in table.pareto_fronts for m in f.methods}
    return [
        plots.Point(
            r.label,
            r.acc.mean,
            r.eod_max.mean,
            r.acc.std,
            r.eod_max.std,
            r.degenerate,
            r.tier,
            (r.tier, r.method) in front,
        )
        for r in table.ok_rows
    ]


def spread_plot(table: Table, path: Path, title: str) -> str | None:
    """The selected runs' test values per seed of each finished method; none below two seeds (one dot per method
    says nothing about spread)."""
    if max((r.seeds for r in table.ok_rows), default=0) < 2:
        return None
    series = {r.method: {m: list(r.per_seed[m].values()) for m in SPREAD_METRICS} for r in table.ok_rows}
    return f"plots/{plots.seed_spread(series, SPREAD_METRICS, path, f'per-seed spread: {title}').name}"


# ------------------------------------------------------------------ one page per method


def method_views(
    board: Board, tables: list[TableView], records: dict[str, RunRecord], plot_dir: Path
) -> list[MethodPage]:
    """One page per method: its metadata and, per leaderboard it is on, trials, groups and failures."""
    pages: dict[str, MethodPage] = {}
    for table, view in zip(board.tables, tables):
        for row in table.rows:
            if row.method not in pages:
                pages[row.method] = MethodPage(
                    row.method, method_page(row.method), row.description, row.citation, requires(row, records)
                )
            pages[row.method].sections.append(section(row, view, records, plot_dir))
    return [pages[name] for name in sorted(pages)]


def trial_view(seed: int, trial: int, run_id: str, hparams: dict[str, Any], record: RunRecord | None) -> TrialView:
    return TrialView(
        seed=seed,
        trial=trial,
        run_id=run_id,
        record=f"records/{slugify(run_id)}.json",
        commit=((record.git_commit if record else None) or "unknown")[:12],
        config=config_text(record.config if record else None),
        hparams=[(k, show_value(v)) for k, v in sorted(hparams.items())],
        metrics=[value_text(record.test_metric(m) if record else None) for m in TABLE_METRICS],
    )


def section(row: Row, view: TableView, records: dict[str, RunRecord], plot_dir: Path) -> SectionView:
    groups_plot = None
    stem = plot_dir / f"{view.id}-{slugify(row.method)}"
    if row.per_group:
        path = stem.with_name(stem.name + "-groups.svg")
        groups_plot = f"plots/{plots.group_bars(row.per_group, path, f'{row.method}: {view.title}').name}"
    return SectionView(
        table=view,
        labels_used=row.labels_used,
        tier=row.tier,
        variant=row.variant,
        isolation=row.isolation,
        flags=row.flags,
        regimes=regime_views(row) if row.ok else [],
        selected=[trial_view(s.seed, s.trial, s.run_id, s.hparams, records.get(s.run_id)) for s in row.selected],
        per_group=[GroupView(g.group, g.n, [value_text(getattr(g, k)) for k in GROUP_METRICS]) for g in row.per_group],
        groups_plot=groups_plot,
        failed=[FailureView(f.run_id, f.error, traceback_of(records.get(f.run_id))) for f in row.failed_runs],
        **method_analyses(row, view, stem),
    )


def method_analyses(row: Row, view: TableView, stem: Path) -> dict[str, Any]:
    """A method page's analyses of one table: its accuracy at equal fairness (table and curve), calibration per group
    (table and reliability diagrams), intersectional gaps and transfer; writes the two plots."""
    out: dict[str, Any] = dict(
        equal_fairness=None,
        equal_fairness_plot=None,
        calibration=None,
        reliability_plot=None,
        transfer=None,
        mechanisms=TextTable(MECHANISMS_CAPTION, MECHANISM_HEADERS, [mechanism_cells(m) for m in row.mechanisms])
        if row.mechanisms
        else None,
    )
    name = f"{row.method}: {view.title}"
    if row.equal_fairness:
        headers = ["", "raw", *[f"eod_max≤{tolerance_text(p.tolerance)}" for p in row.equal_fairness]]
        rows = [
            ["test accuracy", summary_text(row.acc), *[summary_text(p.acc) for p in row.equal_fairness]],
            [
                "achieved test eod_max",
                summary_text(row.eod_max),
                *[summary_text(p.eod_max) for p in row.equal_fairness],
            ],
        ]
        out["equal_fairness"] = TextTable(EQUAL_FAIRNESS_CAPTION, headers, rows)
        points = [(p.tolerance, p.eod_max.mean, p.acc.mean) for p in row.equal_fairness]
        path = stem.with_name(stem.name + "-equal-fairness.svg")
        curve = plots.equal_fairness_curve((row.eod_max.mean, row.acc.mean), points, path, name)
        out["equal_fairness_plot"] = f"plots/{curve.name}"
    if row.calibration:
        groups = row.calibration.per_group
        out["calibration"] = TextTable(
            "ECE and Brier score per sensitive group (means over the selected runs).",
            ["group", "n", "ece", "brier"],
            [[g.group, g.n, value_text(g.ece), value_text(g.brier)] for g in groups],
        )
        path = stem.with_name(stem.name + "-reliability.svg")
        diagram = plots.reliability([(g.group, g.n, g.ece, g.reliability) for g in groups], path, name)
        out["reliability_plot"] = f"plots/{diagram.name}"
    out["intersectional"] = (
        TextTable(
            "Gaps over the intersectional cells (index: the cells and the rule).",
            ["", *INTERSECTIONAL_METRICS],
            [["test", *[summary_text(row.intersectional[m]) for m in INTERSECTIONAL_METRICS]]],
        )
        if row.intersectional
        else None
    )
    if row.transfer:
        out["transfer"] = TextTable(transfer_caption([row]), transfer_headers(), row_transfer_cells(row))
    return out


def traceback_of(record: RunRecord | None) -> str | None:
    return record.traceback if record is not None else None


# ------------------------------------------------------------------ files


def environment() -> Environment:
    """Jinja2 over the packaged templates, autoescaping every value."""
    return Environment(
        loader=PackageLoader("fairfacebench.leaderboard", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def write_records(records: dict[str, RunRecord], folder: Path) -> list[Path]:
    """Every run record as a JSON file of the site (as the store writes it), so each row can link to what produced
    it; returns the files."""
    folder.mkdir(exist_ok=True)
    written = []
    for run_id, record in records.items():
        written.append(folder / f"{slugify(run_id)}.json")
        written[-1].write_text(record_json(record))
    return written


def site_folder(out: Path) -> list[str]:
    """The files an earlier build wrote into `out`; refuses a file, or a non-empty folder no build made."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: pass a new or empty folder, or the folder of an earlier site")
    marker = out / MARKER
    if marker.is_file():
        try:
            return [f for f in json.loads(marker.read_text())["files"] if isinstance(f, str)]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{marker} is damaged ({exc}): delete the site folder {out} and build again") from None
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(
            f"--out {out} holds files that `leaderboard build` did not write (no {MARKER}); nothing was changed: "
            "pass a new or empty folder, or the folder of an earlier site"
        )
    return []


def remove_built(out: Path, files: list[str]) -> None:
    """Delete the files an earlier build listed (so a dropped method leaves no stale page), nothing else."""
    root = out.resolve()
    for name in files:
        path = out / name
        if path.is_file() and not path.is_symlink() and path.resolve().parent.is_relative_to(root):
            path.unlink()
    for folder in ("plots", "static", "records"):
        if (out / folder).is_dir() and not any((out / folder).iterdir()):
            (out / folder).rmdir()


def metric_columns(records: dict[str, RunRecord]) -> list[MetricColumn]:
    """The leaderboard's metric columns: which direction is better and the definition the records carry."""
    definitions = next((r.metric_definitions for r in records.values() if r.metric_definitions), {})
    return [
        MetricColumn(m, "higher" if m in HIGHER_IS_BETTER else "lower", definitions.get(m, "")) for m in TABLE_METRICS
    ]


def write_pages(tables: list[TableView], methods: list[MethodPage], common: dict[str, Any], out: Path) -> list[Path]:
    """index.html, one page per method and the static files; returns the files."""
    env = environment()
    index = out / "index.html"
    index.write_text(env.get_template("index.html").render(tables=tables, methods=methods, **common))
    page = env.get_template("method.html")
    for method in methods:
        (out / method.page).write_text(page.render(method=method, **common))
    for name in STATIC_FILES:
        (out / "static" / name).write_text((files("fairfacebench.leaderboard") / "static" / name).read_text())
    return [index, *(out / m.page for m in methods), *(out / "static" / n for n in STATIC_FILES)]


def build_site(
    store_dir: Path | str,
    out_dir: Path | str,
    rule: str = "val_acc",
    access: DataAccess | None = None,
    defaults_only: bool = False,
) -> dict[str, Path]:
    """Render the whole site into `out_dir` (new, empty or an earlier site); returns the index and data paths.

    The site is rendered into a staging folder beside `out_dir` and then moved in, so an interrupted build leaves
    `out_dir` as it was (or with a marker naming every file that may be there), never a folder later builds refuse.
    """
    out = Path(out_dir)
    earlier = site_folder(out)
    board = build(store_dir, rule, access, defaults_only)
    records = {r.run_id: r for r in ResultStore(store_dir, create=False).records()}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        paths = render_site(board, records, staging)
        move_in(staging, out, earlier)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {kind: out / path.relative_to(staging) for kind, path in paths.items()}


def render_site(board: Board, records: dict[str, RunRecord], out: Path) -> dict[str, Path]:
    """Every file of the site into the empty folder `out`; returns the index and data paths."""
    (out / "plots").mkdir()
    (out / "static").mkdir()
    tables = [table_view(t, records, out / "plots") for t in board.tables]
    methods = method_views(board, tables, records, out / "plots")
    common = {
        "version": __version__,
        "n_records": len(records),
        "metrics": metric_columns(records),
        "isolation_note": ISOLATION_NOTE,
    }
    write_records(records, out / "records")
    paths = write_exports(board, out)
    paths["index"] = write_pages(tables, methods, common, out)[0]
    return paths


def move_in(staging: Path, out: Path, earlier: list[str]) -> None:
    """The staged site into `out`: first a marker naming the earlier files and the new ones (what an interruption may
    leave), then the earlier files the new site lacks are deleted and the new ones moved in, then the final marker."""
    built = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    out.mkdir(exist_ok=True)
    write_marker(out, sorted(set(earlier) | set(built)))
    remove_built(out, [f for f in earlier if f not in built])
    for name in built:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, out / name)
    write_marker(out, built)


def write_marker(out: Path, files: list[str]) -> None:
    tmp = out / f"{MARKER}.tmp"
    tmp.write_text(json.dumps({"files": files}, indent=1))
    os.replace(tmp, out / MARKER)
