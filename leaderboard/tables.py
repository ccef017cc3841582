"""Leaderboard tables built from the result store (never from in-memory state).

One table per (dataset, task, budget): one row per method, the trial chosen
per seed by a named validation-only selection rule, test metrics as
mean ± std over seeds.  Failed runs are shown as failed, not dropped.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from fairfacebench.leaderboard.selection import get_rule, select
from fairfacebench.metrics.bootstrap import seed_summary
from fairfacebench.plain import nan_to_none
from fairfacebench.store import ResultStore

TABLE_METRICS = ("acc", "eod_max", "eod_mean", "dp_diff", "wga")


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


def build(store_dir: Path | str, rule: str = "val_acc") -> dict[str, Any]:
    """Aggregate the store into leaderboard tables (plain data, also written as JSON)."""
    selection = get_rule(rule)
    cells: dict[tuple, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for rec in ResultStore(store_dir).records():
        s = rec["spec"]
        cells[(s["dataset"], s["task"], s["budget"]["name"], s["method"])][s["seed"]].append(rec)
    tables: dict[str, dict] = {}
    for (dataset, task, budget, method), by_seed in sorted(cells.items()):
        table = tables.setdefault(
            f"{dataset}/{task}/{budget}",
            {
                "dataset": dataset,
                "task": task,
                "budget": budget,
                "selection_rule": f"{selection.name}: {selection.description}",
                "rows": [],
            },
        )
        chosen = [select(runs, selection) for _, runs in sorted(by_seed.items())]
        ok = [c for c in chosen if c is not None]
        failed = [r for runs in by_seed.values() for r in runs if r["status"] == "failed"]
        row: dict[str, Any] = {
            "method": method,
            "status": "ok" if ok else "failed",
            "seeds": len(ok),
            "runs": sum(len(v) for v in by_seed.values()),
            "failed_runs": [{"run_id": r["run_id"], "error": r.get("error", "")} for r in failed],
            "labels_used": (ok or failed)[0].get("labels_used", "") if (ok or failed) else "",
            "variant": ok[0].get("variant") if ok else None,
            "description": (ok or failed)[0]["method_info"]["description"],
            "citation": (ok or failed)[0]["method_info"]["citation"],
            "selected": [
                {
                    "seed": c["spec"]["seed"],
                    "trial": c["spec"]["trial"],
                    "run_id": c["run_id"],
                    "hparams": c["spec"]["hparams"],
                }
                for c in ok
            ],
            "budget_report": [c["budget_report"] for c in ok],
        }
        for m in TABLE_METRICS + ("bal_acc", "eopp_diff", "group_acc_std"):
            row[m] = _summarise(
                [c["metrics"]["test"].get(m) for c in ok],
                [(c.get("test_intervals") or {}).get("intervals", {}).get(m) for c in ok],
            )
        row["interval_method"] = INTERVAL_NOTE["seeds" if len(ok) > 1 else "bootstrap"] if ok else None
        row["per_group"] = _per_group(ok)
        table["rows"].append(row)
    return {"selection_rule": rule, "tables": list(tables.values())}


def _summarise(values: list, bootstrap: list) -> dict:
    """Across-seed mean, std and 95% t-interval; with one seed, the run's bootstrap interval."""
    defined = [v for v in values if v is not None and not math.isnan(v)]
    if not defined:
        return {"mean": math.nan, "std": math.nan, "n": 0, "interval": None}
    if len(defined) > 1:
        s = seed_summary(defined)
        return {"mean": s["mean"], "std": s["std"], "n": s["n"], "interval": s["ci95"]}
    return {"mean": defined[0], "std": math.nan, "n": 1, "interval": bootstrap[0] if bootstrap else None}


def mean_of(values: list) -> float:
    defined = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def _per_group(chosen: list[dict]) -> list[dict]:
    """Per-sensitive-group test metrics, averaged over the selected runs of each seed."""
    acc: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for rec in chosen:
        for g in rec["per_group"]["test"]["per_group"]:
            for k in ("n", "acc", "tpr", "fpr", "selection_rate"):
                acc[g["group"]][k].append(g.get(k))
    rows = []
    for group, vals in acc.items():
        row = {"group": group}
        for k, v in vals.items():
            row[k] = mean_of(v) if k != "n" else int(np.mean(v))
        rows.append(row)
    return rows


def to_markdown(board: dict[str, Any]) -> str:
    out = ["# fairbench leaderboard", ""]
    for t in board["tables"]:
        out += [
            f"## {t['dataset']} — task {t['task']} — budget {t['budget']}",
            "",
            f"Model selection: {t['selection_rule']}. "
            "Test metrics of the selected trial per seed (interval method below each table).",
            "",
        ]
        rows = []
        for r in t["rows"]:
            name = r["method"] + (f" [{r['variant']}]" if r.get("variant") else "")
            if r["status"] == "failed":
                rows.append([name, r["labels_used"], *["failed"] * len(TABLE_METRICS), 0])
                continue
            rows.append([name, r["labels_used"], *[fmt(r[m]) for m in TABLE_METRICS], r["seeds"]])
        out += [tabulate(rows, headers=["method", "labels used", *TABLE_METRICS, "seeds"], tablefmt="github"), ""]
        notes = sorted({r["interval_method"] for r in t["rows"] if r.get("interval_method")})
        out += [f"Intervals: {n}." for n in notes] + [""]
        out += [f"### Budget report: {t['dataset']}/{t['task']}", "", _budget_table(t["rows"]), ""]
        for r in t["rows"]:
            if r["status"] != "ok":
                continue
            out += [f"### {t['dataset']}/{t['task']}: per-group test metrics of {r['method']}", ""]
            pg = [
                [g["group"], g["n"], *[_f(g.get(k)) for k in ("acc", "tpr", "fpr", "selection_rate")]]
                for g in r["per_group"]
            ]
            out += [tabulate(pg, headers=["group", "n", "acc", "tpr", "fpr", "selection_rate"], tablefmt="github"), ""]
    return "\n".join(out)


def _budget_table(rows: list[dict]) -> str:
    """Steps, samples seen and wall time per selected run, so equal budgets can be checked."""
    out = []
    for r in rows:
        for sel, rep in zip(r["selected"], r["budget_report"]):
            out.append(
                [
                    r["method"],
                    sel["seed"],
                    sel["trial"],
                    rep["steps"],
                    rep["budget"]["steps"],
                    rep["samples_seen"],
                    rep["wall_time_s"],
                    ", ".join(f"{k}={v}" for k, v in rep["steps_per_stage"].items()),
                ]
            )
    return tabulate(
        out,
        headers=[
            "method",
            "seed",
            "trial",
            "steps",
            "budget steps",
            "samples seen",
            "fit wall time (s)",
            "steps per stage",
        ],
        tablefmt="github",
    )


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
                "method": r["method"],
                "variant": r.get("variant"),
                "status": r["status"],
                "labels_used": r["labels_used"],
                "seeds": r["seeds"],
                "selection_rule": board["selection_rule"],
            }
            for m in TABLE_METRICS + ("bal_acc", "eopp_diff", "group_acc_std"):
                lo, hi = r[m]["interval"] or (None, None)
                row[f"{m}_mean"], row[f"{m}_std"], row[f"{m}_lo"], row[f"{m}_hi"] = r[m]["mean"], r[m]["std"], lo, hi
            rows.append(row)
    return pd.DataFrame(rows)


def write(store_dir: Path | str, out_dir: Path | str | None = None, rule: str = "val_acc") -> dict[str, Path]:
    """Write leaderboard.md, leaderboard.csv and leaderboard.json next to each other."""
    board = build(store_dir, rule)
    out = Path(out_dir or store_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "leaderboard.md", "csv": out / "leaderboard.csv", "json": out / "leaderboard.json"}
    paths["md"].write_text(to_markdown(board))
    to_frame(board).to_csv(paths["csv"], index=False)
    paths["json"].write_text(json.dumps(nan_to_none(board), indent=1, allow_nan=False, default=str))
    return paths
