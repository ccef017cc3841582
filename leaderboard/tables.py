"""Leaderboard tables built from the result store (never from in-memory state).

One table per (dataset, task, budget): one row per method, the trial chosen
per seed by a named validation-only selection rule, test metrics as
mean ± std over seeds.  Failed runs are shown as failed, not dropped.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from fairfacebench.metrics.compare import clip_interval, critical_difference, mean_ranks, paired_difference, t_interval
from fairfacebench.metrics.fairness import METRIC_NAMES, compute_metrics
from fairfacebench.plain import nan_to_none
from fairfacebench.plugins import selection_rule
from fairfacebench.record import RunRecord
from fairfacebench.spec import COMPARISON_FIELDS, canonical_json, spec_hash
from fairfacebench.store import PREDICTIONS, ResultStore

TABLE_METRICS = ("acc", "eod_max", "eod_mean", "dp_diff", "wga")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell starting so as a formula
MARKDOWN_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "\n": " ", "\r": " "})


def fmt(summary: dict) -> str:
    """'mean ± std [lo, hi]' over seeds, or 'value [lo, hi]' with the run's bootstrap interval for one seed."""
    mean = summary["mean"]
    if mean is None or math.isnan(mean):
        return "n/a"
    text = f"{mean:.3f}"
    if summary.get("n", 0) > 1:
        text += f" ± {summary['std']:.3f}"
    lo, hi = summary.get("interval") or (None, None)
    if lo is not None and hi is not None:
        text += f" [{lo:.3f}, {hi:.3f}]"
    return text


INTERVAL_NOTE = {
    "seeds": "± is the std over seeds (ddof=1); [lo, hi] the 95% Student-t interval of the mean over seeds",
    "bootstrap": "[lo, hi] is the 95% percentile bootstrap interval over test rows of the single seed "
    "(1,000 multinomial resamples of the confusion counts)",
}


def complete_test_metrics(record: RunRecord, store: ResultStore) -> None:
    """Test metrics a record predates (a metric added to the suite later), recomputed from its stored predictions."""
    test = (record.metrics or {}).get("test")
    missing = [m for m in METRIC_NAMES if test is not None and m not in test]
    if not record.ok or not missing or not (store.path(record.run_id) / PREDICTIONS).is_file():
        return
    arrays = store.predictions(record.run_id)
    groups = record.task_info.group_names if record.task_info else None
    if not groups or "test_a" not in arrays:
        return
    n_classes = arrays["test_scores"].shape[1]
    report = compute_metrics(arrays["test_y"], arrays["test_scores"].argmax(1), arrays["test_a"], groups, n_classes)
    test.update({m: report.summary[m] for m in missing})
    if record.recomputed_from_predictions is None:
        record.recomputed_from_predictions = missing


def get_rule(name: str) -> Any:
    """An installed selection rule by name, or a member of an installed family such as `val_acc@val_eod_max<=EPS`
    (this repository's rules are found without importing plugins from outside it)."""
    return selection_rule(name)


def select(records: list[RunRecord], rule: Any) -> RunRecord | None:
    """The best finished trial under `rule`, looking at validation metrics only; ties go to the lowest trial."""
    ok = [r for r in records if r.ok]
    if not ok:
        return None
    return max(ok, key=lambda r: (*rule.key(r), -r.trial))


def differing_settings(comparisons: list[dict[str, Any]]) -> list[str]:
    """The comparison settings that take more than one value in a store (they name its tables apart)."""
    keys = [k for k in COMPARISON_FIELDS if k not in ("dataset", "task")]
    return [k for k in keys if len({canonical_json(c.get(k)) for c in comparisons}) > 1]


def build(store_dir: Path | str, rule: str = "val_acc") -> dict[str, Any]:
    """Aggregate the store into leaderboard tables, one per comparison (plain data, also written as JSON).

    A table holds only runs whose comparison settings (data, budget, resolution,
    backbone, weights, augmentation, VLM, pool, dataset options) are identical;
    within it, the selection rule picks one trial per method and seed.
    """
    selection = get_rule(rule)
    cells: dict[tuple[str, str], dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    comparisons: dict[str, dict[str, Any]] = {}
    store = ResultStore(store_dir, create=False)
    for rec in store.records():
        complete_test_metrics(rec, store)
        comparison = rec.spec.comparison
        key = spec_hash(comparison)
        comparisons[key] = comparison
        cells[(key, rec.method)][rec.seed].append(rec)
    named_by = differing_settings(list(comparisons.values()))
    tables: dict[str, dict] = {}
    order = sorted(cells, key=lambda k: (comparisons[k[0]]["dataset"], comparisons[k[0]]["task"], k[0], k[1]))
    for key, method in order:
        by_seed, version, superseded = newest_version(cells[(key, method)])
        comparison = comparisons[key]
        table = tables.get(key) or tables.setdefault(key, new_table(key, comparison, named_by, selection))
        chosen = [select(runs, selection) for _, runs in sorted(by_seed.items())]
        ok = [c for c in chosen if c is not None]
        failed = [r for runs in by_seed.values() for r in runs if not r.ok]
        row: dict[str, Any] = {
            "method": method,
            "status": "ok" if ok else "failed",
            "seeds": len(ok),
            "runs": sum(len(v) for v in by_seed.values()),
            "method_version": version,
            "superseded_runs": superseded,
            "failed_runs": [{"run_id": r.run_id, "error": r.error or ""} for r in failed],
            "labels_used": (ok or failed)[0].labels_used if (ok or failed) else "",
            "variant": ok[0].variant if ok else None,
            "description": (ok or failed)[0].method_info.description,
            "citation": (ok or failed)[0].method_info.citation,
            "ablation_of": (ok or failed)[0].method_info.ablation_of,
            "selected": [{"seed": c.seed, "trial": c.trial, "run_id": c.run_id, "hparams": c.spec.hparams} for c in ok],
            "budget_report": [c.budget_report for c in ok],
            "steps": mean_of([c.budget_report.get("steps") for c in ok]),
            "forward_samples": mean_of([c.budget_report.get("forward_samples") for c in ok]),
            "fit_time_s": mean_of([c.budget_report.get("wall_time_s") for c in ok]),
        }
        for m in TABLE_METRICS + ("bal_acc", "eopp_diff", "group_acc_std", "cell_acc_std"):
            row[m] = _summarise(
                [c.test_metric(m) for c in ok],
                [c.test_interval(m) for c in ok],
            )
        row["interval_method"] = INTERVAL_NOTE["seeds" if len(ok) > 1 else "bootstrap"] if ok else None
        row["per_group"] = _per_group(ok)
        row["per_seed"] = {m: {c.seed: c.test_metric(m) for c in ok} for m in ABLATION_METRICS}
        row["degenerate"] = sorted({reason for c in ok for reason in degenerate(c)})
        table["rows"].append(row)
        for c in ok:
            prep = shared_preparation(c.vlm)
            if prep and prep not in table["shared_preparation"]:
                table["shared_preparation"].append(prep)
    for table in tables.values():
        add_comparisons(table)
    return {"selection_rule": rule, "tables": list(tables.values())}


def newest_version(by_seed: dict[int, list[RunRecord]]) -> tuple[dict[int, list[RunRecord]], int, int]:
    """Only the runs of the method's newest version (a new version changes what the method does, so its runs
    and an older version's are never mixed or selected between), that version, and how many older runs were
    left out."""
    newest = max(r.spec.method_version for runs in by_seed.values() for r in runs)
    kept = {seed: [r for r in runs if r.spec.method_version == newest] for seed, runs in by_seed.items()}
    left_out = sum(len(runs) for runs in by_seed.values()) - sum(len(runs) for runs in kept.values())
    return {seed: runs for seed, runs in kept.items() if runs}, newest, left_out


# Metrics the paired comparison and the ranking use, and which direction is better.
COMPARED_METRICS = ("acc", "eod_max", "eopp_diff", "dp_diff", "wga")
# A system against its own ablation: the compared metrics and the spreads val-reweight's seed drives down.
ABLATION_METRICS = COMPARED_METRICS + ("cell_acc_std", "group_acc_std")
HIGHER_IS_BETTER = {"acc", "bal_acc", "wga"}
REFERENCE_METHOD = "erm"


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


def add_comparisons(table: dict[str, Any]) -> None:
    """Paired differences against erm and of each system against its ablations over seeds, mean ranks over
    (metric, seed) blocks, and the seed count note."""
    ok = [r for r in table["rows"] if r["status"] == "ok"]
    reference = next((r for r in ok if r["method"] == REFERENCE_METHOD), None)
    by_name = {r["method"]: r for r in ok}
    for row in ok:
        row["vs_erm"] = (
            {m: paired_difference(row["per_seed"][m], reference["per_seed"][m]) for m in COMPARED_METRICS}
            if reference is not None and row is not reference
            else None
        )
        system = by_name.get(row.get("ablation_of") or "")
        row["system_vs_ablation"] = (
            {m: paired_difference(system["per_seed"][m], row["per_seed"][m]) for m in ABLATION_METRICS}
            if system is not None
            else None
        )
    seeds = sorted(set.intersection(*[set(r["per_seed"]["acc"]) for r in ok])) if ok else []
    blocks = [
        (
            np.array([np.nan if r["per_seed"][m].get(s) is None else r["per_seed"][m][s] for r in ok]),
            m in HIGHER_IS_BETTER,
        )
        for m in COMPARED_METRICS
        for s in seeds
    ]
    ranks = mean_ranks(blocks) if blocks and len(ok) > 1 else [math.nan] * len(ok)
    for row, rank in zip(ok, ranks):
        row["mean_rank"] = float(rank)
    table["ranking"] = {
        "blocks": len(blocks),
        "block_rule": f"each of {list(COMPARED_METRICS)} on each of the {len(seeds)} seed(s) every method ran; "
        "rank 1 is best; ties share the mean rank",
        "critical_difference": critical_difference(len(ok), len(blocks)) if 2 <= len(ok) <= 20 and blocks else None,
        "caveat": "the blocks share runs (five metrics of one seed), so the Nemenyi critical difference is indicative",
    }
    most = max((r["seeds"] for r in ok), default=0)
    table["seed_note"] = (
        None
        if most >= 3
        else f"at most {most} seed(s): across-seed intervals and paired comparisons are not meaningful below 3 seeds"
    )


def new_table(key: str, comparison: dict[str, Any], named_by: list[str], selection: Any) -> dict[str, Any]:
    budget = comparison.get("budget") or {}
    return {
        "comparison_id": key,
        "dataset": comparison["dataset"],
        "task": comparison["task"],
        "budget": budget.get("name", "?"),
        "comparison": comparison,
        "distinguished_by": {k: comparison.get(k) for k in named_by},
        "selection_rule": f"{selection.name}: {selection.description}",
        "shared_preparation": [],
        "rows": [],
    }


def shared_preparation(vlm_info: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a comparison's VLM was trained on, what its captions name, its samples and time (None: not trained here)."""
    report = (vlm_info or {}).get("report")
    if not report:
        return None
    return {
        "encoder": vlm_info.get("id"),
        "trained_on": report.get("trained_on"),
        "captions_name": report.get("captions_name"),
        "samples": report.get("samples"),
        "train_time_s": report.get("train_time_s"),
        "zero_shot": report.get("zero_shot"),
    }


def _summarise(values: list, bootstrap: list) -> dict:
    """Across-seed mean, std and 95% t-interval; with one seed, the run's bootstrap interval."""
    defined = [v for v in values if v is not None and not math.isnan(v)]
    if not defined:
        return {"mean": math.nan, "std": math.nan, "n": 0, "interval": None}
    if len(defined) > 1:
        s = t_interval(defined)
        return {"mean": s["mean"], "std": s["std"], "n": s["n"], "interval": clip_interval(s["ci95"])}
    return {"mean": defined[0], "std": math.nan, "n": 1, "interval": bootstrap[0] if bootstrap else None}


def mean_of(values: list) -> float:
    defined = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def _per_group(chosen: list[RunRecord]) -> list[dict]:
    """Per-sensitive-group test metrics, averaged over the selected runs of each seed."""
    acc: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for rec in chosen:
        for g in rec.test_groups:
            for k in ("n", "acc", "tpr", "fpr", "selection_rate"):
                acc[g["group"]][k].append(g.get(k))
    rows = []
    for group, vals in acc.items():
        row = {"group": group}
        for k, v in vals.items():
            row[k] = mean_of(v) if k != "n" else int(np.mean(v))
        rows.append(row)
    return rows


def table_title(t: dict[str, Any]) -> str:
    """dataset — task — budget, plus the settings that tell this comparison from the store's others."""
    extra = "; ".join(f"{k} {canonical_json(v)}" for k, v in t.get("distinguished_by", {}).items())
    return f"{t['dataset']} — task {t['task']} — budget {t['budget']}" + (f" — {extra}" if extra else "")


def md(value: Any) -> str:
    """Text safe in a Markdown table cell or heading: no HTML tags, no column breaks, one line."""
    return str(value).translate(MARKDOWN_ESCAPES)


def md_table(rows: list[list[Any]], headers: list[str]) -> str:
    """A GitHub Markdown table whose text cells are escaped (a plugin's name cannot add columns or HTML)."""
    cells = [[md(v) if isinstance(v, str) else v for v in row] for row in rows]
    return tabulate(cells, headers=headers, tablefmt="github")


def to_markdown(board: dict[str, Any]) -> str:
    out = ["# fairbench leaderboard", ""]
    for t in board["tables"]:
        out += [
            f"## {md(table_title(t))}",
            "",
            f"Model selection: {md(t['selection_rule'])}. "
            "Test metrics of the selected trial per seed (interval method below each table).",
            "",
        ]
        if t.get("budget") == "smoke":
            out += [f"> {SMOKE_BANNER}", ""]
        if t.get("seed_note"):
            out += [f"Note: {t['seed_note']}.", ""]
        rows = []
        for r in t["rows"]:
            name = r["method"] + (f" [{r['variant']}]" if r.get("variant") else "")
            if r.get("degenerate"):
                name += f" (degenerate: {'; '.join(r['degenerate'])})"
            if r["status"] == "failed":
                rows.append([name, r["labels_used"], *["failed"] * len(TABLE_METRICS), 0, "", ""])
                continue
            compute = [_count(r.get("forward_samples")), _count(r.get("fit_time_s"), 1)]
            rows.append([name, r["labels_used"], *[fmt(r[m]) for m in TABLE_METRICS], r["seeds"], *compute])
        headers = ["method", "labels used", *TABLE_METRICS, "seeds", "forward samples", "fit time (s)"]
        out += [md_table(rows, headers), ""]
        notes = sorted({r["interval_method"] for r in t["rows"] if r.get("interval_method")})
        out += [f"Intervals: {n}." for n in notes] + [""]
        out += comparison_markdown(t)
        for prep in t.get("shared_preparation", []):
            out += [
                f"Shared preparation: VLM {md(prep['encoder'])} trained on {md(prep['trained_on'])}; its captions "
                f"name {md(', '.join(prep['captions_name'] or []))}; {prep['samples']} image-caption samples, "
                f"{prep['train_time_s']} s. Every run of a VLM method reads it; its cost is not in their budgets.",
                "",
            ]
        out += [f"### Budget report: {md(t['dataset'])}/{md(t['task'])}", "", _budget_table(t["rows"]), ""]
        for r in t["rows"]:
            if r["status"] != "ok":
                continue
            out += [f"### {md(t['dataset'])}/{md(t['task'])}: per-group test metrics of {md(r['method'])}", ""]
            pg = [
                [g["group"], g["n"], *[_f(g.get(k)) for k in ("acc", "tpr", "fpr", "selection_rate")]]
                for g in r["per_group"]
            ]
            out += [md_table(pg, ["group", "n", "acc", "tpr", "fpr", "selection_rate"]), ""]
    return "\n".join(out)


SMOKE_BANNER = "Budget smoke: a check that everything runs, not a comparison. Do not read these numbers as results."


def comparison_markdown(t: dict[str, Any]) -> list[str]:
    """The paired differences against erm and of each system against its ablations, and the mean ranks of a
    table, as Markdown."""
    ok = [r for r in t["rows"] if r["status"] == "ok"]
    out = paired_markdown(
        "Paired differences against erm over the seeds both ran: mean [95% t-interval].",
        "method − erm",
        [(r["method"], r["vs_erm"]) for r in ok if r.get("vs_erm")],
        COMPARED_METRICS,
    )
    out += paired_markdown(
        "Each system against its own ablation (system − ablation) over the seeds both ran: mean [95% t-interval].",
        "system − ablation",
        [(f"{r['ablation_of']} − {r['method']}", r["system_vs_ablation"]) for r in ok if r.get("system_vs_ablation")],
        ABLATION_METRICS,
    )
    older = [f"{md(r['method'])} {r['superseded_runs']}" for r in t["rows"] if r.get("superseded_runs")]
    if older:
        out += ["Runs of an older method version, left out (only a method's newest version is tabled): "
                + ", ".join(older) + ".", ""]
    ranking = t.get("ranking") or {}
    if ranking.get("blocks"):
        ranked = sorted(ok, key=lambda r: r.get("mean_rank", math.inf))
        cd = ranking.get("critical_difference")
        out += [
            f"Mean rank over {ranking['blocks']} blocks ({ranking['block_rule']}); Nemenyi critical difference "
            f"{_f(cd)} ({ranking['caveat']}): " + ", ".join(f"{md(r['method'])} {r['mean_rank']:.2f}" for r in ranked),
            "",
        ]
    return out


def paired_markdown(caption: str, header: str, labelled: list[tuple[str, dict]], metrics: tuple[str, ...]) -> list[str]:
    """A captioned Markdown table of paired differences, one row per (label, {metric: summary}); none if empty."""
    if not labelled:
        return []
    rows = [[label, *[fmt_difference(diffs[m]) for m in metrics]] for label, diffs in labelled]
    return [caption, "", md_table(rows, [header, *[f"Δ{m}" for m in metrics]]), ""]


def fmt_difference(summary: dict[str, Any]) -> str:
    if not summary or summary.get("mean") is None:
        return "n/a"
    lo, hi = summary.get("ci95") or (None, None)
    text = f"{summary['mean']:+.3f}"
    return text + (f" [{lo:+.3f}, {hi:+.3f}]" if lo is not None and hi is not None else f" (n={summary['n']})")


def _count(value: Any, digits: int = 0) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"


def _budget_table(rows: list[dict]) -> str:
    """Steps, forward samples and wall time per selected run and stage, so equal budgets can be checked."""
    out = []
    for r in rows:
        for sel, rep in zip(r["selected"], r["budget_report"]):
            forwards = rep.get("forward_samples_per_stage", {})
            out.append(
                [
                    r["method"],
                    sel["seed"],
                    sel["trial"],
                    f"{rep['steps']} / {rep['budget']['steps']}",
                    f"{rep.get('forward_samples', '?')} / {rep.get('forward_limit', '?')}",
                    rep["wall_time_s"],
                    ", ".join(f"{k}={v}" for k, v in rep["steps_per_stage"].items()),
                    ", ".join(f"{k}={sum(v.values())}" for k, v in forwards.items()),
                    ", ".join(f"{k}={v}" for k, v in rep.get("wall_time_per_stage_s", {}).items()),
                ]
            )
    headers = [
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
    return md_table(out, headers)


def _f(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def to_frame(board: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for t in board["tables"]:
        for r in t["rows"]:
            row = {
                "dataset": t["dataset"],
                "task": t["task"],
                "budget": t["budget"],
                "comparison_id": t["comparison_id"],
                "method": r["method"],
                "variant": r.get("variant"),
                "status": r["status"],
                "labels_used": r["labels_used"],
                "seeds": r["seeds"],
                "selection_rule": board["selection_rule"],
                "steps": r.get("steps"),
                "forward_samples": r.get("forward_samples"),
                "fit_time_s": r.get("fit_time_s"),
            }
            for m in TABLE_METRICS + ("bal_acc", "eopp_diff", "group_acc_std", "cell_acc_std"):
                lo, hi = r[m]["interval"] or (None, None)
                row[f"{m}_mean"], row[f"{m}_std"], row[f"{m}_lo"], row[f"{m}_hi"] = r[m]["mean"], r[m]["std"], lo, hi
            rows.append(row)
    return pd.DataFrame(rows)


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as a formula (first character = + - @ tab CR) get a leading apostrophe."""
    return frame.map(lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_PREFIXES) else v)


def write_exports(board: dict[str, Any], out: Path) -> dict[str, Path]:
    """leaderboard.md, .csv (formula-safe) and .json of one board in `out`."""
    paths = {"md": out / "leaderboard.md", "csv": out / "leaderboard.csv", "json": out / "leaderboard.json"}
    paths["md"].write_text(to_markdown(board))
    # Text quoted always: pandas leaves a bare CR unquoted, which would split a row in a reader.
    csv_safe(to_frame(board)).to_csv(paths["csv"], index=False, quoting=csv.QUOTE_NONNUMERIC)
    paths["json"].write_text(json.dumps(nan_to_none(board), indent=1, allow_nan=False, default=str))
    return paths


def write(store_dir: Path | str, out_dir: Path | str | None = None, rule: str = "val_acc") -> dict[str, Path]:
    """Write leaderboard.md, leaderboard.csv and leaderboard.json next to each other."""
    board = build(store_dir, rule)
    out = Path(out_dir or store_dir)
    out.mkdir(parents=True, exist_ok=True)
    return write_exports(board, out)
