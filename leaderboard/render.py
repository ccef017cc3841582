"""One leaderboard board (`model.Board`) as Markdown, as a pandas frame and CSV, and as JSON.

Every writer reads the same typed board: the JSON file is its plain form, the
Markdown and the frame read its attributes.  Text from plugins is made safe for
each format here: Markdown cells are escaped, CSV cells cannot start a formula.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from fairfacebench.leaderboard.model import (
    ABLATION_METRICS,
    COMPARED_METRICS,
    GROUP_METRICS,
    SUMMARY_METRICS,
    TABLE_METRICS,
    Board,
    MetricSummary,
    PairedDifference,
    Row,
    SharedPreparation,
    Table,
    defined,
)
from fairfacebench.plain import nan_to_none
from fairfacebench.spec import canonical_json
from fairfacebench.typed import to_plain

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell starting so as a formula
MARKDOWN_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "\n": " ", "\r": " "})
SMOKE_BANNER = "Budget smoke: a check that everything runs, not a comparison. Do not read these numbers as results."
LEADERBOARD_HEADERS = ["method", "labels used", *TABLE_METRICS, "seeds", "forward samples", "fit time (s)"]
BUDGET_HEADERS = [
    "method",
    "seed",
    "trial",
    "steps / limit",
    "forward samples / limit",
    "fit wall time (s)",
    "steps per stage",
    "forward samples per stage",
    "wall time per stage (s)",
]


# ------------------------------------------------------------------ text of numbers (Markdown and site alike)


def summary_text(summary: MetricSummary) -> str:
    """'mean ± std [lo, hi]' over seeds, or 'value [lo, hi]' with the run's bootstrap interval for one seed."""
    if not defined(summary.mean):
        return "n/a"
    text = f"{summary.mean:.3f}"
    if defined(summary.std):
        text += f" ± {summary.std:.3f}"
    lo, hi = summary.interval or (None, None)
    if defined(lo) and defined(hi):
        text += f" [{lo:.3f}, {hi:.3f}]"
    return text


def difference_text(difference: PairedDifference | None) -> str:
    """'+mean [lo, hi]' of a paired difference, '+mean (n=1)' without an interval, 'n/a' when undefined."""
    if difference is None or difference.mean is None:
        return "n/a"
    lo, hi = difference.ci95 or (None, None)
    text = f"{difference.mean:+.3f}"
    return text + (f" [{lo:+.3f}, {hi:+.3f}]" if lo is not None and hi is not None else f" (n={difference.n})")


def count_text(value: float | None, digits: int = 0) -> str:
    """A count or a duration with thousands separators; empty when undefined."""
    return f"{value:,.{digits}f}" if defined(value) else ""


def value_text(value: float | None) -> str:
    return f"{value:.3f}" if defined(value) else "n/a"


def table_title(table: Table) -> str:
    """dataset — task — budget, plus the settings that tell this comparison from the store's others."""
    extra = "; ".join(f"{k} {canonical_json(v)}" for k, v in table.distinguished_by.items())
    return f"{table.dataset} — task {table.task} — budget {table.budget}" + (f" — {extra}" if extra else "")


# ------------------------------------------------------------------ Markdown


def md(value: Any) -> str:
    """Text safe in a Markdown table cell or heading: no HTML tags, no column breaks, one line."""
    return str(value).translate(MARKDOWN_ESCAPES)


def md_table(rows: list[list[Any]], headers: list[str]) -> str:
    """A GitHub Markdown table whose text cells are escaped (a plugin's name cannot add columns or HTML)."""
    cells = [[md(v) if isinstance(v, str) else v for v in row] for row in rows]
    return tabulate(cells, headers=headers, tablefmt="github")


def to_markdown(board: Board) -> str:
    out = ["# fairbench leaderboard", ""]
    for table in board.tables:
        out += table_markdown(table)
    return "\n".join(out)


def table_markdown(t: Table) -> list[str]:
    """One comparison: heading, notes, the leaderboard, comparisons, shared preparation, budgets, groups."""
    out = [
        f"## {md(table_title(t))}",
        "",
        f"Model selection: {md(t.selection_rule)}. "
        "Test metrics of the selected trial per seed (interval method below each table).",
        "",
    ]
    out += [f"> {SMOKE_BANNER}", ""] if t.smoke else []
    out += [f"Note: {t.seed_note}.", ""] if t.seed_note else []
    out += [md_table([leaderboard_cells(r) for r in t.rows], LEADERBOARD_HEADERS), ""]
    out += [f"Intervals: {n}." for n in t.interval_notes] + [""]
    out += comparison_markdown(t)
    for prep in t.shared_preparation:
        out += [shared_preparation_text(prep), ""]
    out += [f"### Budget report: {md(t.dataset)}/{md(t.task)}", "", budget_table(t.rows), ""]
    for r in t.ok_rows:
        out += [f"### {md(t.dataset)}/{md(t.task)}: per-group test metrics of {md(r.method)}", ""]
        groups = [[g.group, g.n, *[value_text(getattr(g, k)) for k in GROUP_METRICS]] for g in r.per_group]
        out += [md_table(groups, ["group", "n", *GROUP_METRICS]), ""]
    return out


def leaderboard_cells(r: Row) -> list[Any]:
    name = r.label + (f" (degenerate: {'; '.join(r.degenerate)})" if r.degenerate else "")
    if not r.ok:
        return [name, r.labels_used, *["failed"] * len(TABLE_METRICS), 0, "", ""]
    compute = [count_text(r.forward_samples), count_text(r.fit_time_s, 1)]
    return [name, r.labels_used, *[summary_text(r.summary(m)) for m in TABLE_METRICS], r.seeds, *compute]


def shared_preparation_text(prep: SharedPreparation) -> str:
    return (
        f"Shared preparation: VLM {md(prep.encoder)} trained on {md(prep.trained_on)}; its captions "
        f"name {md(', '.join(prep.captions_name or []))}; {prep.samples} image-caption samples, "
        f"{prep.train_time_s} s. Every run of a VLM method reads it; its cost is not in their budgets."
    )


def comparison_markdown(t: Table) -> list[str]:
    """The paired differences against erm and of each system against its ablations, the runs of older method
    versions left out, and the mean ranks of a table, as Markdown."""
    ok = t.ok_rows
    out = paired_markdown(
        "Paired differences against erm over the seeds both ran: mean [95% t-interval].",
        "method − erm",
        [(r.method, r.vs_erm) for r in ok if r.vs_erm],
        COMPARED_METRICS,
    )
    out += paired_markdown(
        "Each system against its own ablation (system − ablation) over the seeds both ran: mean [95% t-interval].",
        "system − ablation",
        [(f"{r.ablation_of} − {r.method}", r.system_vs_ablation) for r in ok if r.system_vs_ablation],
        ABLATION_METRICS,
    )
    older = [f"{md(r.method)} {r.superseded_runs}" for r in t.rows if r.superseded_runs]
    if older:
        out += [
            "Runs of an older method version, left out (only a method's newest version is tabled): "
            + ", ".join(older)
            + ".",
            "",
        ]
    return out + ranking_markdown(t)


def ranking_markdown(t: Table) -> list[str]:
    ranking = t.ranking
    if not ranking.blocks:
        return []
    ranked = sorted(t.ok_rows, key=lambda r: math.inf if r.mean_rank is None else r.mean_rank)
    return [
        f"Mean rank over {ranking.blocks} blocks ({ranking.block_rule}); Nemenyi critical difference "
        f"{value_text(ranking.critical_difference)} ({ranking.caveat}): "
        + ", ".join(f"{md(r.method)} {r.mean_rank:.2f}" for r in ranked),
        "",
    ]


def paired_markdown(
    caption: str, header: str, labelled: list[tuple[str, dict[str, PairedDifference]]], metrics: tuple[str, ...]
) -> list[str]:
    """A captioned Markdown table of paired differences, one row per (label, {metric: difference}); none if empty."""
    if not labelled:
        return []
    rows = [[label, *[difference_text(diffs[m]) for m in metrics]] for label, diffs in labelled]
    return [caption, "", md_table(rows, [header, *[f"Δ{m}" for m in metrics]]), ""]


def budget_table(rows: list[Row]) -> str:
    """Steps, forward samples and wall time per selected run and stage, so equal budgets can be checked."""
    cells = [budget_cells(r.method, s.seed, s.trial, rep) for r in rows for s, rep in zip(r.selected, r.budget_report)]
    return md_table(cells, BUDGET_HEADERS)


def budget_cells(method: str, seed: int, trial: int, rep: dict[str, Any]) -> list[Any]:
    """One selected run's budget report (as the run recorded it) as a row of the budget table."""
    forwards = rep.get("forward_samples_per_stage", {})
    return [
        method,
        seed,
        trial,
        f"{rep['steps']} / {rep['budget']['steps']}",
        f"{rep.get('forward_samples', '?')} / {rep.get('forward_limit', '?')}",
        rep["wall_time_s"],
        ", ".join(f"{k}={v}" for k, v in rep["steps_per_stage"].items()),
        ", ".join(f"{k}={sum(v.values())}" for k, v in forwards.items()),
        ", ".join(f"{k}={v}" for k, v in rep.get("wall_time_per_stage_s", {}).items()),
    ]


# ------------------------------------------------------------------ pandas, CSV and JSON


def to_frame(board: Board) -> pd.DataFrame:
    """One row per (comparison, method): settings, compute, and mean, std, lo and hi of every summarised metric."""
    return pd.DataFrame([frame_row(board, t, r) for t in board.tables for r in t.rows])


def frame_row(board: Board, t: Table, r: Row) -> dict[str, Any]:
    row = {
        "dataset": t.dataset,
        "task": t.task,
        "budget": t.budget,
        "comparison_id": t.comparison_id,
        "method": r.method,
        "variant": r.variant,
        "status": r.status,
        "labels_used": r.labels_used,
        "seeds": r.seeds,
        "selection_rule": board.selection_rule,
        "steps": r.steps,
        "forward_samples": r.forward_samples,
        "fit_time_s": r.fit_time_s,
    }
    for m in SUMMARY_METRICS:
        s = r.summary(m)
        lo, hi = s.interval or (None, None)
        row[f"{m}_mean"], row[f"{m}_std"], row[f"{m}_lo"], row[f"{m}_hi"] = s.mean, s.std, lo, hi
    return row


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as a formula (first character = + - @ tab CR) get a leading apostrophe."""
    return frame.map(lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_PREFIXES) else v)


def to_json(board: Board) -> str:
    """The board's plain form (fields in the model's order), undefined numbers as null."""
    return json.dumps(nan_to_none(to_plain(board)), indent=1, allow_nan=False, default=str)


def write_exports(board: Board, out: Path) -> dict[str, Path]:
    """leaderboard.md, .csv (formula-safe) and .json of one board in `out`."""
    paths = {"md": out / "leaderboard.md", "csv": out / "leaderboard.csv", "json": out / "leaderboard.json"}
    paths["md"].write_text(to_markdown(board))
    # Text quoted always: pandas leaves a bare CR unquoted, which would split a row in a reader.
    csv_safe(to_frame(board)).to_csv(paths["csv"], index=False, quoting=csv.QUOTE_NONNUMERIC)
    paths["json"].write_text(to_json(board))
    return paths
