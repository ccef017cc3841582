"""One leaderboard board (`model.Board`) as Markdown, as a pandas frame and CSV, and as JSON.

Every writer reads the same typed board: the JSON file is its plain form, the
Markdown and the frame read its attributes.  Text from plugins is made safe for
each format here: Markdown cells are escaped, CSV cells cannot start a formula.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
from tabulate import tabulate

from fairfacebench.leaderboard.model import (
    ABLATION_METRICS,
    CALIBRATION_METRICS,
    COMPARED_METRICS,
    DEFAULT,
    DEFAULT_TRIAL,
    GROUP_METRICS,
    INTERSECTIONAL_METRICS,
    MIN_SEEDS,
    REGIME_METRICS,
    SUMMARY_METRICS,
    TABLE_METRICS,
    TRANSFER_METRICS,
    Board,
    HardwareRuns,
    MechanismSummary,
    MetricRanking,
    MetricSummary,
    PairedDifference,
    RegimeResult,
    Row,
    SharedPreparation,
    Table,
    defined,
)
from fairfacebench.plain import nan_to_none, spreadsheet_safe
from fairfacebench.spec import canonical_json
from fairfacebench.typed import to_plain

MARKDOWN_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "\n": " ", "\r": " "})
LEADERBOARD_HEADERS = [
    "method",
    "tier",
    "labels used",
    *TABLE_METRICS,
    "seeds",
    "forward samples",
    "fit time (s)",
    "isolation",
    "flags",
]
EQUAL_FAIRNESS = (
    "group-specific randomised thresholds fitted per run on validation's selection half (error-parity; Cruz & Hardt "
    "2024); every method becomes one that reads the sensitive attribute at inference"
)
ISOLATION_NOTE = (
    "where each method ran: sealed, in a sandboxed child that holds only what its declared labels allow "
    '(README, "Sealed runs"), or in-process, in the harness\'s process with the plugin trusted; mixed: its seeds differ'
)
REGIME_HEADERS = ["method", "regime", "trial", "seeds", *REGIME_METRICS, *[f"Δ{m} vs default" for m in REGIME_METRICS]]
PAIRED = (
    "mean [95% interval] of the per-seed differences over the seeds both ran; interval and p-value from the "
    "crossed paired bootstrap over seeds and the shared test rows, widened for few seeds (docs/METRICS.md); 'tied': "
    "not significant at α = 0.05 after Holm's "
    "correction over"
)
PAIRED_CAPTION = f"{PAIRED} the column (family: this table, this metric)"
REGIME_CAPTION = (
    f"{PAIRED} the methods (family: this table, this regime, this metric; a regime that picks the trial an earlier "
    "one picked is that one's test, 'as' it, not a second one; a rule's pick is tested once it has run on every seed "
    "the defaults ran)"
)
ORACLE_TEXT = (
    "The test oracle picks the trial with the best test accuracy on the search seeds: an upper bound on selection "
    "for accuracy that no method may claim. When the store's plan names it in final_selection, its pick runs on the "
    "final seeds like a rule's and is tested once it has; otherwise it runs there only when a rule picks it too, "
    "and stands on the search seeds alone (its seed count)."
)
MECHANISMS_CAPTION = (
    "What each method's stages did, judged by the harness after fit against truth the method never saw "
    "(fairfacebench.diagnostics: the AMI of inferred groups with the true groups, pseudo-label accuracy per true "
    "group, the mean learned weight of right and wrong pseudo-labels, the true-group share a re-sampler draws); "
    "mean and range over the selected runs' seeds; descriptive, not a comparison"
)
MECHANISM_HEADERS = ["stage", "quantity", "mean", "range over seeds", "seeds"]
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
    """'+mean [lo, hi]' of a paired difference ('+mean [lo, hi] tied' when Holm does not reject, '+mean [lo, hi]
    not judged (n=2)' over fewer than MIN_SEEDS seeds), '+mean (n=1)' without an interval, 'n/a' when undefined."""
    if difference is None or difference.mean is None:
        return "n/a"
    lo, hi = difference.ci95 or (None, None)
    text = f"{difference.mean:+.3f}"
    if lo is None or hi is None:
        return text + f" (n={difference.n})"
    text += f" [{lo:+.3f}, {hi:+.3f}]"
    if difference.n < MIN_SEEDS:
        return text + f" not judged (n={difference.n})"
    return text + (" tied" if difference.tied else "")


def flag_codes(r: Row) -> str:
    return ", ".join(f.code for f in r.flags)


def rank_text(ranking: MetricRanking, method: str) -> str:
    """'1.33 best', '2.00 tied' (with the best after Holm), '3.00' (worse) or '3.00 not compared' (no predictions, or
    fewer than 3 seeds shared with the best); empty when the method has no rank."""
    rank = ranking.ranks.get(method)
    if not defined(rank):
        return ""
    mark = {"best": " best", "tied": " tied", "worse": ""}.get(vs_best(ranking, method), " not compared")
    return f"{rank:.2f}{mark}"


def regime_name(g: RegimeResult) -> str:
    return g.regime + (" (upper bound)" if g.upper_bound else "")


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
    """Text safe in a Markdown table cell or heading: no HTML tags, no column breaks, one line, no link or image
    ('[text](url)', '![alt](url)': the bracket before the parenthesis is escaped)."""
    return str(value).translate(MARKDOWN_ESCAPES).replace("](", "\\](")


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
    out += [f"> {md(t.banner)}", ""] if t.banner else []
    out += [f"Note: {t.seed_note}.", ""] if t.seed_note else []
    out += [f"Note: {t.stage_note}.", ""] if t.stage_note else []
    out += [md_table([leaderboard_cells(r) for r in t.rows], LEADERBOARD_HEADERS), ""]
    out += [f"Intervals: {n}." for n in t.interval_notes] + [f"Isolation: {ISOLATION_NOTE}.", ""]
    out += flags_markdown(t) + hardware_markdown(t.hardware) + fronts_markdown(t)
    out += regimes_markdown(t) + comparison_markdown(t)
    out += analyses_markdown(t) + mechanisms_markdown(t)
    for prep in t.shared_preparation:
        out += [shared_preparation_text(prep), ""]
    out += [f"### Budget report: {md(t.dataset)}/{md(t.task)}", "", budget_table(t.rows), ""]
    for r in t.ok_rows:
        out += [f"### {md(t.dataset)}/{md(t.task)}: per-group test metrics of {md(r.method)}", ""]
        groups = [[g.group, g.n, *[value_text(getattr(g, k)) for k in GROUP_METRICS]] for g in r.per_group]
        out += [md_table(groups, ["group", "n", *GROUP_METRICS]), ""]
    return out


def leaderboard_cells(r: Row) -> list[Any]:
    if not r.ok:
        failed = ["failed"] * len(TABLE_METRICS)
        return [r.label, r.tier, r.labels_used, *failed, 0, "", "", r.isolation, flag_codes(r)]
    compute = [count_text(r.forward_samples), count_text(r.fit_time_s, 1)]
    metrics = [summary_text(r.summary(m)) for m in TABLE_METRICS]
    return [r.label, r.tier, r.labels_used, *metrics, r.seeds, *compute, r.isolation, flag_codes(r)]


def shared_flags(t: Table) -> list[tuple[str, str, str]]:
    """(code, detail, whose) of each distinct flag of the table's rows; whose: 'every row' or the methods."""
    shared: dict[tuple[str, str], list[str]] = {}
    for r in t.rows:
        for f in r.flags:
            shared.setdefault((f.code, f.detail), []).append(r.method)
    return [
        (code, detail, "every row" if len(methods) == len(t.rows) else ", ".join(methods))
        for (code, detail), methods in shared.items()
    ]


def flags_markdown(t: Table) -> list[str]:
    """Each flag of the table's rows with its detail, once for the rows that share it (docs/METRICS.md, "Flags")."""
    lines = [f"- {md(code)} ({md(whose)}): {md(detail)}" for code, detail, whose in shared_flags(t)]
    if not lines:
        return []
    return ['Flags (the codes of the flags column; docs/METRICS.md, "Flags"):', "", *lines, ""]


def hardware_markdown(hardware: list[HardwareRuns]) -> list[str]:
    """Which machines the selected runs ran on: a table never averages across them silently."""
    if not hardware:
        return []
    parts = [
        f"{md(h.hardware)}: {h.runs} run{'s' if h.runs != 1 else ''} ({md(methods_text(h.methods))})" for h in hardware
    ]
    return [f"Hardware of the selected runs (CPU model, torch CPU capability): {'; '.join(parts)}.", ""]


def methods_text(methods: list[str], most: int = 5) -> str:
    return ", ".join(methods) if len(methods) <= most else f"{len(methods)} methods"


def fronts_markdown(t: Table) -> list[str]:
    if not t.pareto_fronts:
        return []
    fronts = "; ".join(f"{md(f.tier)}: {md(', '.join(f.methods)) or 'none'}" for f in t.pareto_fronts)
    return [
        "Pareto front per tier (test accuracy against eod_max, means over seeds; rows flagged degenerate or "
        f"at-chance left out): {fronts}.",
        "",
    ]


def regimes_markdown(t: Table) -> list[str]:
    """With a search: per method, each selection regime's trial, test metrics and difference to the defaults."""
    if t.search is None:
        return []
    rows = [regime_cells(r, g) for r in t.ok_rows for g in r.regimes or []]
    return [
        f"Default vs tuned. {search_text(t)} Per regime: the trial it picks on the search seeds, its test metrics "
        f"over the seeds it ran, and regime − default ({REGIME_CAPTION}). {ORACLE_TEXT}",
        "",
        md_table(rows, REGIME_HEADERS),
        "",
    ]


def search_text(t: Table) -> str:
    """'The search: trials 1-4 on the search seed(s) 0; trial 0 and each rule's pick on every seed.'"""
    searched = [k for k in t.search.trials if k != 0]
    trials = f"trials {searched[0]}-{searched[-1]}" if searched else "no trial but the defaults"
    seeds = ", ".join(str(s) for s in t.search.search_seeds)
    return f"The search: {trials} on the search seed(s) {seeds}; trial 0 and each rule's pick on every seed."


def regime_cells(r: Row, g: RegimeResult) -> list[Any]:
    trial = "none finished" if g.trial is None else g.trial
    diffs = [regime_difference_text(g, m) for m in REGIME_METRICS]
    return [r.label, regime_name(g), trial, len(g.seeds), *[summary_text(g.metrics[m]) for m in REGIME_METRICS], *diffs]


def regime_difference_text(g: RegimeResult, metric: str) -> str:
    """A regime's difference to the defaults: '' for the defaults' own line, 'the defaults' when the regime picks
    them (the same runs: nothing to test), 'as val_acc' when an earlier regime picks its trial (that line holds the
    test), 'not run on seeds 3, 4' for a rule's pick still to run there."""
    if g.not_run_on:
        return f"not run on seed{'s' if len(g.not_run_on) > 1 else ''} {', '.join(map(str, g.not_run_on))}"
    if g.same_as:
        return f"as {g.same_as}"
    if g.minus_default:
        return difference_text(g.minus_default.get(metric))
    return "the defaults" if g.trial == DEFAULT_TRIAL and g.regime != DEFAULT else ""


def regime_tested(g: RegimeResult) -> bool:
    """Its line states a difference to the defaults (not 'the defaults', 'as ...' or 'not run on ...')."""
    return bool(g.minus_default) and not g.same_as


def shared_preparation_text(prep: SharedPreparation) -> str:
    return md(prep.description)


def comparison_markdown(t: Table) -> list[str]:
    """The paired differences against erm and of each system against its ablations, the runs of older method
    versions left out, and the mean ranks of a table, as Markdown."""
    ok = t.ok_rows
    lines = verdict_lines(t)
    out = [f"- {md(line)}" for line in lines] + [""] if lines else []
    out += paired_markdown(
        f"Paired differences against erm: {PAIRED_CAPTION}.",
        "method − erm",
        [(r.method, r.vs_erm) for r in ok if r.vs_erm],
        COMPARED_METRICS,
    )
    out += paired_markdown(
        f"Each system against its own ablation (system − ablation): {PAIRED_CAPTION}.",
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


def verdict_lines(t: Table) -> list[str]:
    """'Against erm, <category>: a (train labels), b (...)' per category of the table's verdict, then the same of
    each system against its own ablation."""
    return [f"Against erm, {v.category}: {', '.join(v.methods)}" for v in t.verdict] + [
        f"Against its own ablation, {v.category}: {', '.join(v.methods)}" for v in t.ablation_verdict
    ]


def ranking_markdown(t: Table) -> list[str]:
    """Ranks per metric within each tier, with the best and the methods tied with it, and the critical differences."""
    if not t.rankings:
        return []
    by = {(k.tier, k.metric): k for k in t.rankings}
    rows = [[r.method, r.tier, *[rank_text(by[r.tier, m], r.method) for m in COMPARED_METRICS]] for r in t.ok_rows]
    return [
        "Ranks per metric within each tier (1 = best; one block per seed every method of the tier ran, ties share "
        "the mean rank; Demšar 2006). 'best': the best mean of the tier; 'tied': its paired difference to the best "
        "is not significant at α = 0.05 after Holm's correction over the tier's methods; 'not compared': no stored "
        f"predictions, or fewer than {MIN_SEEDS} seeds shared with the best (outside the correction).",
        "",
        md_table(rows, ["method", "tier", *COMPARED_METRICS]),
        "",
        f"Nemenyi critical difference at α = 0.05: {critical_differences(t.rankings)}.",
        "",
    ]


def critical_differences(rankings: list[MetricRanking]) -> str:
    """Per tier: the critical difference, its number of methods and seeds (per metric when the metrics differ)."""
    parts = []
    for tier in dict.fromkeys(k.tier for k in rankings):
        found = {
            (value_text(k.critical_difference), len(k.ranks), len(k.seeds)): k.metric
            for k in rankings
            if k.tier == tier
        }
        texts = [f"{cd} ({n} method{'s' if n != 1 else ''}, {s} seed{'s' if s != 1 else ''})" for cd, n, s in found]
        named = texts if len(found) == 1 else [f"{m} {x}" for m, x in zip(found.values(), texts)]
        parts.append(f"{md(tier)} {', '.join(named)}")
    return "; ".join(parts)


def paired_markdown(
    caption: str, header: str, labelled: list[tuple[str, dict[str, PairedDifference]]], metrics: tuple[str, ...]
) -> list[str]:
    """A captioned Markdown table of paired differences, one row per (label, {metric: difference}); none if empty."""
    if not labelled:
        return []
    rows = [[label, *[difference_text(diffs[m]) for m in metrics]] for label, diffs in labelled]
    return [caption, "", md_table(rows, [header, *[f"Δ{m}" for m in metrics]]), ""]


# ------------------------------------------------------------------ analyses beyond the columns (Markdown and site)

SENSITIVE_AT_INFERENCE = "uses the sensitive attribute at inference"


def tolerance_text(tolerance: float) -> str:
    return f"{tolerance:g}"


def equal_fairness_headers(t: Table) -> list[str]:
    """'acc raw', 'eod_max raw', then per tolerance 'acc @ eod_max<=t' and its achieved 'eod_max'."""
    points = next((r.equal_fairness for r in t.ok_rows if r.equal_fairness), [])
    per_tolerance = [h for p in points for h in (f"acc @ eod_max≤{tolerance_text(p.tolerance)}", "achieved eod_max")]
    return ["method", "tier", "acc (raw)", "eod_max (raw)", *per_tolerance]


def equal_fairness_cells(r: Row) -> list[str]:
    points = [text for p in r.equal_fairness or [] for text in (summary_text(p.acc), summary_text(p.eod_max))]
    return [r.label, r.tier, summary_text(r.acc), summary_text(r.eod_max), *points]


def order_rows(t: Table) -> tuple[list[str], list[list[Any]]]:
    """Position by mean test accuracy: raw, and at each tolerance (most accurate first)."""
    orders = t.equal_fairness_orders
    headers = ["position", "raw accuracy", *[f"at eod_max≤{tolerance_text(o.tolerance)}" for o in orders]]
    length = max(len(o.order) for o in orders)
    rows = [[i + 1, orders[0].raw_order[i], *[o.order[i] for o in orders]] for i in range(length)]
    return headers, rows


def tau_text(t: Table) -> str:
    """'Kendall's τ with the raw order: 0.76 at eod_max<=0.02, ...'."""
    parts = [f"{value_text(o.kendall_tau)} at eod_max≤{tolerance_text(o.tolerance)}" for o in t.equal_fairness_orders]
    return "Kendall's τ between each order and the raw one (1 = the same order): " + ", ".join(parts)


def calibration_headers(t: Table) -> list[str]:
    groups = next((r.calibration.per_group for r in t.ok_rows if r.calibration), [])
    return ["method", *CALIBRATION_METRICS, *[f"ece {g.group}" for g in groups], *[f"brier {g.group}" for g in groups]]


def calibration_cells(r: Row) -> list[str]:
    c = r.calibration
    groups = c.per_group
    return [
        r.label,
        *[summary_text(getattr(c, m)) for m in CALIBRATION_METRICS],
        *[value_text(g.ece) for g in groups],
        *[value_text(g.brier) for g in groups],
    ]


def cells_text(t: Table) -> list[str]:
    """The intersectional cells: the rule, each kept cell with its rows, the merged and the left-out ones."""
    x = t.intersectional
    kept = ", ".join(f"{name} ({n})" for name, n in x.groups)
    lines = [
        f"Cells of {' × '.join(x.attributes)} (read from {x.dataset}) on the test split: {x.rule}.",
        f"Kept ({len(x.groups)}, test rows): {kept}.",
    ]
    if x.merged:
        lines.append(
            "Merged: " + "; ".join(f"{m['cell']} (size {m['count']}) into {m['into']}" for m in x.merged) + "."
        )
    held = [m for m in x.left_out if m.get("rows", m["count"])]
    lines.append(
        "Left out, not scored: "
        + ("; ".join(f"{m['cell']} (size {m['count']}{rows_text(m)}): {m['reason']}" for m in held) or "none")
        + "."
    )
    empty = [m["cell"] for m in x.left_out if not m.get("rows", m["count"])]
    if empty:
        lines.append(f"Empty on the test split ({len(empty)}): {', '.join(empty)}.")
    return lines


def rows_text(entry: dict[str, Any]) -> str:
    return f", {entry['rows']} rows" if "rows" in entry else ""


def transfer_headers() -> list[str]:
    pairs = [h for m in TRANSFER_METRICS for h in (f"{m} in-domain", f"{m} transfer")]
    return ["method", "evaluated on", "seeds", "shared groups", "rows (left out)", *pairs, "flags"]


def transfer_rows(t: Table) -> list[list[Any]]:
    return [cells for r in t.ok_rows for cells in row_transfer_cells(r)]


def row_transfer_cells(r: Row) -> list[list[Any]]:
    """One line per other dataset a row's runs were evaluated on: in-domain and transfer values side by side."""
    return [
        [
            r.label,
            x.dataset,
            len(x.seeds),
            ", ".join(x.group_names),
            f"{x.n} ({x.left_out})",
            *[summary_text(part[m]) for m in TRANSFER_METRICS for part in (x.in_domain, x.transfer)],
            ", ".join(f.code for f in x.flags),
        ]
        for x in r.transfer or []
    ]


def transfer_flag_notes(rows: list[Row]) -> list[str]:
    """Each flag of the rows' transfer lines with its detail, once for the lines that share it:
    'code (method on dataset, ...): detail'."""
    lines: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        for x in r.transfer or []:
            for f in x.flags:
                lines.setdefault((f.code, f.detail), []).append(f"{r.label} on {x.dataset}")
    return [f"{code} ({', '.join(whose)}): {detail}" for (code, detail), whose in lines.items()]


TRANSFER_CAPTION = (
    "In-domain vs transfer: each selected run on its own test split and on another dataset's, both read through "
    "the shared vocabulary and scored over the shared groups (docs/DATASETS.md, transfer)."
)


def transfer_caption(rows: list[Row]) -> str:
    """The site's caption of a transfer table: TRANSFER_CAPTION and the details of its lines' flags."""
    notes = transfer_flag_notes(rows)
    return " ".join([TRANSFER_CAPTION, *(["Flags:", "; ".join(notes) + "."] if notes else [])])


def analyses_markdown(t: Table) -> list[str]:
    """Accuracy at equal fairness, calibration per group, intersectional gaps, in-domain vs transfer, and the notes
    on what each uses or why it was not made."""
    out: list[str] = []
    ok = t.ok_rows
    if any(r.equal_fairness for r in ok):
        out += [
            f"### Accuracy at equal fairness ({SENSITIVE_AT_INFERENCE})",
            "",
            f"Test accuracy after post-processing to eod_max ≤ t, and the achieved test eod_max: {EQUAL_FAIRNESS}.",
            "",
            md_table([equal_fairness_cells(r) for r in ok if r.equal_fairness], equal_fairness_headers(t)),
            "",
        ]
        headers, rows = order_rows(t)
        out += ["Order by mean test accuracy (most accurate first):", "", md_table(rows, headers), ""]
        out += [f"{tau_text(t)}.", ""]
    if any(r.calibration for r in ok):
        out += [
            "### Calibration per group",
            "",
            md_table([calibration_cells(r) for r in ok if r.calibration], calibration_headers(t)),
            "",
        ]
    if t.intersectional is not None:
        out += [f"### Intersectional groups: {md(' × '.join(t.intersectional.attributes))}", ""]
        out += [f"- {md(line)}" for line in cells_text(t)] + [""]
        rows = [
            [r.label, *[summary_text(r.intersectional[m]) for m in INTERSECTIONAL_METRICS]]
            for r in ok
            if r.intersectional
        ]
        out += [md_table(rows, ["method", *INTERSECTIONAL_METRICS]), ""]
    if any(r.transfer for r in ok):
        out += [
            "### In-domain vs transfer",
            "",
            TRANSFER_CAPTION,
            "",
            md_table(transfer_rows(t), transfer_headers()),
            "",
        ]
        notes = transfer_flag_notes(ok)
        out += ["Flags of these lines:", "", *[f"- {md(n)}" for n in notes], ""] if notes else []
    if t.analysis_notes:
        out += ["Notes on these analyses:", "", *[f"- {md(n)}" for n in t.analysis_notes], ""]
    return out


def mechanisms_markdown(t: Table) -> list[str]:
    """Each method's stage diagnostics (`leaderboard.mechanisms`) as one table: mean and range over seeds."""
    rows = [[r.label, *mechanism_cells(m)] for r in t.ok_rows for m in r.mechanisms or []]
    if not rows:
        return []
    return [
        "### How the stages worked",
        "",
        MECHANISMS_CAPTION,
        "",
        md_table(rows, ["method", *MECHANISM_HEADERS]),
        "",
    ]


def mechanism_cells(m: MechanismSummary) -> list[Any]:
    return [m.stage, m.quantity, number_text(m.mean), f"{number_text(m.low)} – {number_text(m.high)}", m.seeds]


def number_text(value: float) -> str:
    """A diagnostic: counts as integers, other numbers to 3 decimals."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3f}"


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
    """The row's settings and summaries, then its tier, hardware, flags, ranks and (with a search) its regimes."""
    return {**summary_columns(board, t, r), **check_columns(t, r), **regime_columns(r), **analysis_columns(t, r)}


def summary_columns(board: Board, t: Table, r: Row) -> dict[str, Any]:
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


def check_columns(t: Table, r: Row) -> dict[str, Any]:
    """tier, hardware, isolation, flags (codes), flag_details ('code: detail' joined by ' | '), rank_M and vs_best_M
    per metric."""
    row = {
        "tier": r.tier,
        "hardware": "; ".join(r.hardware),
        "isolation": r.isolation,
        "flags": flag_codes(r),
        "flag_details": " | ".join(f"{f.code}: {f.detail}" for f in r.flags),
    }
    by = {k.metric: k for k in t.rankings if k.tier == r.tier} if r.ok else {}
    for m in COMPARED_METRICS:
        ranking = by.get(m)
        row[f"rank_{m}"] = ranking.ranks.get(r.method) if ranking else None
        row[f"vs_best_{m}"] = vs_best(ranking, r.method) if ranking else None
    return row


def vs_best(ranking: MetricRanking, method: str) -> str:
    if method == ranking.best:
        return "best"
    if method in ranking.tied_with_best:
        return "tied"
    return "worse" if method in ranking.worse_than_best else "not compared"


def regime_columns(r: Row) -> dict[str, Any]:
    """'default_trial', 'val_acc_acc_mean', 'test_oracle_acc_minus_default', ... of a row with a search."""
    row: dict[str, Any] = {}
    for g in r.regimes or []:
        name = g.regime.replace(" ", "_")
        row[f"{name}_trial"], row[f"{name}_seeds"] = g.trial, len(g.seeds)
        for m in REGIME_METRICS:
            row[f"{name}_{m}_mean"] = g.metrics[m].mean
            row[f"{name}_{m}_minus_default"] = (g.minus_default or {}).get(m).mean if g.minus_default else None
    return row


def summary_cells(prefix: str, s: MetricSummary) -> dict[str, Any]:
    """'{prefix}_mean', '_std', '_lo', '_hi' of one summary."""
    lo, hi = s.interval or (None, None)
    return {f"{prefix}_mean": s.mean, f"{prefix}_std": s.std, f"{prefix}_lo": lo, f"{prefix}_hi": hi}


def analysis_columns(t: Table, r: Row) -> dict[str, Any]:
    """'at_eod0.05_acc_mean' (and 'at_eod_uses': the sensitive attribute at inference), 'ece_gap_mean',
    'ece_group_NAME', 'intersectional_eod_max_mean' (with the cells' attributes, rule, merged and left-out cells),
    'transfer_DATASET_acc_mean', 'transfer_DATASET_acc_in_domain_mean', ..., 'transfer_DATASET_flags' (codes) and
    'transfer_DATASET_flag_details'."""
    row: dict[str, Any] = {}
    if r.equal_fairness:
        row["at_eod_uses"] = f"{SENSITIVE_AT_INFERENCE} (group-specific thresholds, error-parity)"
        for p in r.equal_fairness:
            for m in ("acc", "eod_max"):
                row.update(summary_cells(f"at_eod{tolerance_text(p.tolerance)}_{m}", getattr(p, m)))
    if r.calibration:
        for m in CALIBRATION_METRICS:
            row.update(summary_cells(m, getattr(r.calibration, m)))
        for g in r.calibration.per_group:
            row[f"ece_group_{g.group}"], row[f"brier_group_{g.group}"] = g.ece, g.brier
    if r.intersectional and t.intersectional:
        x = t.intersectional
        row["intersectional_groups"] = f"{' × '.join(x.attributes)} ({x.dataset}): {len(x.groups)} cells"
        row["intersectional_rule"] = x.rule
        row["intersectional_merged"] = "; ".join(f"{m['cell']} into {m['into']}" for m in x.merged)
        row["intersectional_left_out"] = "; ".join(f"{m['cell']} (size {m['count']}{rows_text(m)})" for m in x.left_out)
    for m, s in (r.intersectional or {}).items():
        row.update(summary_cells(f"intersectional_{m}", s))
    for x in r.transfer or []:
        row[f"transfer_{x.dataset}_seeds"] = len(x.seeds)
        row[f"transfer_{x.dataset}_flags"] = ", ".join(f.code for f in x.flags)
        row[f"transfer_{x.dataset}_flag_details"] = " | ".join(f"{f.code}: {f.detail}" for f in x.flags)
        for m in TRANSFER_METRICS:
            row.update(summary_cells(f"transfer_{x.dataset}_{m}_in_domain", x.in_domain[m]))
            row.update(summary_cells(f"transfer_{x.dataset}_{m}", x.transfer[m]))
    return row


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as a formula (first character = + - @ tab CR) get a leading apostrophe."""
    return frame.map(spreadsheet_safe)


def to_json(board: Board) -> str:
    """The board's plain form (fields in the model's order), undefined numbers as null."""
    return json.dumps(nan_to_none(to_plain(board)), indent=1, allow_nan=False, default=str)


EXPORTS = {"md": "leaderboard.md", "csv": "leaderboard.csv", "json": "leaderboard.json"}


def foreign_exports(out: Path) -> list[Path]:
    """leaderboard.md, .csv or .json in `out` that no fairbench leaderboard wrote (writing there would replace them)."""
    found = []
    for kind, name in EXPORTS.items():
        path = out / name
        if path.is_file() and not _written_by_fairbench(kind, path):
            found.append(path)
    return found


def current_exports(out: Path, rule: str, records: Iterable[Path]) -> dict[str, Path] | None:
    """The leaderboard files in a store's folder when they are up to date with it: all three written by fairbench,
    built under selection rule `rule` and newer than every file of `records` (the store's run records; None
    otherwise).  What a `fairbench run` that computed nothing keeps instead of building the same board again."""
    paths = {kind: out / name for kind, name in EXPORTS.items()}
    if not all(path.is_file() for path in paths.values()) or foreign_exports(out):
        return None
    try:
        if json.loads(paths["json"].read_text(encoding="utf-8")).get("selection_rule") != rule:
            return None
    except ValueError:
        return None
    built = min(path.stat().st_mtime_ns for path in paths.values())
    newest = max((record.stat().st_mtime_ns for record in records), default=0)
    return paths if built >= newest else None


def _written_by_fairbench(kind: str, path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if kind == "md":
        return text.startswith("# fairbench leaderboard\n")
    if kind == "csv":
        return text.startswith('"dataset","task","budget","comparison_id"')
    try:
        data = json.loads(text)
    except ValueError:
        return False
    return isinstance(data, dict) and "selection_rule" in data and "tables" in data


def write_exports(board: Board, out: Path) -> dict[str, Path]:
    """leaderboard.md, .csv (formula-safe) and .json of one board in `out`."""
    paths = {kind: out / name for kind, name in EXPORTS.items()}
    paths["md"].write_text(to_markdown(board))
    # Text quoted always: pandas leaves a bare CR unquoted, which would split a row in a reader.
    csv_safe(to_frame(board)).to_csv(paths["csv"], index=False, quoting=csv.QUOTE_NONNUMERIC)
    paths["json"].write_text(to_json(board))
    return paths
