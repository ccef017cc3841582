"""Leaderboard tables built from the result store (never from in-memory state).

One table per (dataset, task, budget): one row per method, the trial chosen
per seed by a named validation-only selection rule, test metrics as
mean ± std over seeds.  Failed runs are shown as failed, not dropped.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from fairfacebench.store import ResultStore, nan_to_none

TABLE_METRICS = ("acc", "eod_max", "eod_mean", "dp_diff", "wga")


@dataclass(frozen=True)
class SelectionRule:
    """Chooses one trial per (dataset, task, method, seed) from validation metrics only."""

    name: str
    description: str
    key: Any  # record -> sortable score, higher is better


def _val(record: dict, metric: str) -> float:
    v = record["metrics"]["val"].get(metric)
    return -math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else v


SELECTION_RULES = {
    "val_acc": SelectionRule("val_acc", "highest validation accuracy", lambda r: _val(r, "acc")),
    "val_wga": SelectionRule("val_wga", "highest validation worst-group accuracy", lambda r: _val(r, "wga")),
}


def select(records: list[dict], rule: SelectionRule) -> dict | None:
    """The best finished trial under `rule`; ties go to the lowest trial number."""
    ok = [r for r in records if r["status"] == "ok"]
    if not ok:
        return None
    return max(ok, key=lambda r: (rule.key(r), -r["spec"]["trial"]))


def mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(arr) == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def fmt(mean: float, std: float, n: int) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f}"


def build(store_dir: Path | str, rule: str = "val_acc") -> dict[str, Any]:
    """Aggregate the store into leaderboard tables (plain data, also written as JSON)."""
    selection = SELECTION_RULES[rule]
    cells: dict[tuple, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for rec in ResultStore(store_dir).records():
        s = rec["spec"]
        cells[(s["dataset"], s["task"], s["budget"]["name"], s["method"])][s["seed"]].append(rec)
    tables: dict[str, dict] = {}
    for (dataset, task, budget, method), by_seed in sorted(cells.items()):
        table = tables.setdefault(
            f"{dataset}/{task}/{budget}",
            {"dataset": dataset, "task": task, "budget": budget, "selection_rule": f"{selection.name}: {selection.description}", "rows": []},
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
            "selected": [{"seed": c["spec"]["seed"], "trial": c["spec"]["trial"], "run_id": c["run_id"], "hparams": c["spec"]["hparams"]} for c in ok],
            "budget_report": [c["budget_report"] for c in ok],
        }
        for m in TABLE_METRICS + ("bal_acc", "eopp_diff", "group_acc_std"):
            mean, std = mean_std([c["metrics"]["test"].get(m) for c in ok])
            row[m] = {"mean": mean, "std": std}
        row["per_group"] = _per_group(ok)
        table["rows"].append(row)
    return {"selection_rule": rule, "tables": list(tables.values())}


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
            row[k] = mean_std([x for x in v if x is not None])[0] if k != "n" else int(np.mean(v))
        rows.append(row)
    return rows


def to_markdown(board: dict[str, Any]) -> str:
    out = ["# fairbench leaderboard", ""]
    for t in board["tables"]:
        out += [
            f"## {t['dataset']} — task {t['task']} — budget {t['budget']}",
            "",
            f"Model selection: {t['selection_rule']}. Test metrics, mean ± std over seeds.",
            "",
        ]
        rows = []
        for r in t["rows"]:
            name = r["method"] + (f" [{r['variant']}]" if r.get("variant") else "")
            if r["status"] == "failed":
                rows.append([name, r["labels_used"], *["failed"] * len(TABLE_METRICS), 0])
                continue
            rows.append([name, r["labels_used"], *[fmt(r[m]["mean"], r[m]["std"], r["seeds"]) for m in TABLE_METRICS], r["seeds"]])
        out += [tabulate(rows, headers=["method", "labels used", *TABLE_METRICS, "seeds"], tablefmt="github"), ""]
        for r in t["rows"]:
            if r["status"] != "ok":
                continue
            out += [f"### {t['dataset']}/{t['task']}: per-group test metrics of {r['method']}", ""]
            pg = [[g["group"], g["n"], *[_f(g.get(k)) for k in ("acc", "tpr", "fpr", "selection_rate")]] for g in r["per_group"]]
            out += [tabulate(pg, headers=["group", "n", "acc", "tpr", "fpr", "selection_rate"], tablefmt="github"), ""]
    return "\n".join(out)


def _f(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def to_frame(board: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for t in board["tables"]:
        for r in t["rows"]:
            row = {"dataset": t["dataset"], "task": t["task"], "budget": t["budget"], "method": r["method"], "variant": r.get("variant"),
                   "status": r["status"], "labels_used": r["labels_used"], "seeds": r["seeds"], "selection_rule": board["selection_rule"]}
            for m in TABLE_METRICS + ("bal_acc", "eopp_diff", "group_acc_std"):
                row[f"{m}_mean"], row[f"{m}_std"] = r[m]["mean"], r[m]["std"]
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
