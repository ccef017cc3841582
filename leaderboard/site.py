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
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from fairfacebench import __version__
from fairfacebench.errors import ConfigError
from fairfacebench.leaderboard import plots
from fairfacebench.leaderboard.tables import (
    ABLATION_METRICS,
    COMPARED_METRICS,
    HIGHER_IS_BETTER,
    SMOKE_BANNER,
    TABLE_METRICS,
    build,
    fmt_difference,
    table_title,
    write_exports,
)
from fairfacebench.record import RunRecord
from fairfacebench.spec import RunSpec
from fairfacebench.store import ResultStore, record_json

SPREAD_METRICS = ("acc", "eod_max")
STATIC_FILES = ("sort.js", "style.css")
MARKER = ".fairbench-site.json"  # written by every build: the files it made, the only ones a rebuild may delete


def slugify(text: str) -> str:
    """A file-name-safe slug; a name that had to change gets a hash suffix, so two names never share one."""
    clean = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")[:48] or "x"
    return clean if clean == text else f"{clean}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def method_page(name: str) -> str:
    return f"method-{slugify(name)}.html"


def cell(summary: dict[str, Any]) -> dict[str, str]:
    """Display text ('mean ± std [lo, hi]') and the sort value of one metric summary."""
    mean = summary.get("mean")
    if not plots.defined(mean):
        return {"text": "n/a", "value": ""}
    text = f"{mean:.3f}"
    if plots.defined(summary.get("std")):
        text += f" ± {summary['std']:.3f}"
    lo, hi = summary.get("interval") or summary.get("ci95") or (None, None)
    if plots.defined(lo) and plots.defined(hi):
        text += f" [{lo:.3f}, {hi:.3f}]"
    return {"text": text, "value": repr(float(mean))}


def budget_text(spec: RunSpec) -> str:
    budget = spec.budget
    steps = f"{budget.steps} optimizer steps at batch size {budget.batch_size}"
    return f"{budget.name}: {steps}, {spec.resolution} px"


def count_text(value: Any, digits: int = 0) -> dict[str, str]:
    """A count (forward samples, seconds) as display text and sort value."""
    if not plots.defined(value):
        return {"text": "", "value": ""}
    return {"text": f"{value:,.{digits}f}", "value": repr(float(value))}


def show_value(value: Any) -> str:
    """A hyperparameter value as text (strings as they are, everything else as JSON)."""
    return value if isinstance(value, str) else json.dumps(value)


def _row_runs(row: dict, records: dict[str, RunRecord]) -> list[RunRecord]:
    ids = [s["run_id"] for s in row["selected"]] + [f["run_id"] for f in row["failed_runs"]]
    return [records[i] for i in ids if i in records]


def table_view(table: dict, records: dict[str, RunRecord], plot_dir: Path) -> dict[str, Any]:
    """What the index shows of one (dataset, task, budget) leaderboard; writes its two plots."""
    slug = slugify(f"{table['dataset']}-{table['task']}-{table['budget']}-{table['comparison_id'][:8]}")
    runs = [r for row in table["rows"] for r in _row_runs(row, records)]
    rows = []
    for row in table["rows"]:
        info = next((r.method_info for r in _row_runs(row, records)), None)
        rows.append(
            {
                "method": row["method"],
                "page": method_page(row["method"]),
                "variant": row.get("variant"),
                "labels_used": row["labels_used"],
                "requires": (info.requires if info else "") or "-",
                "status": row["status"],
                "seeds": row["seeds"],
                "failed": len(row["failed_runs"]),
                "cells": [cell(row[m]) for m in TABLE_METRICS],
                "degenerate": row.get("degenerate", []),
                "mean_rank": row.get("mean_rank"),
                "vs_erm": [fmt_difference(row["vs_erm"][m]) for m in COMPARED_METRICS] if row.get("vs_erm") else None,
                "ablation_label": f"{row.get('ablation_of')} − {row['method']}",
                "system_vs_ablation": [fmt_difference(row["system_vs_ablation"][m]) for m in ABLATION_METRICS]
                if row.get("system_vs_ablation")
                else None,
                "forward_samples": count_text(row.get("forward_samples")),
                "fit_time_s": count_text(row.get("fit_time_s"), 1),
            }
        )
    title = table_title(table)
    return {
        "id": slug,
        "title": title,
        "dataset": table["dataset"],
        "task": table["task"],
        "selection_rule": table["selection_rule"],
        "budget": budget_text(runs[0].spec) if runs else table["budget"],
        "interval_notes": sorted({row["interval_method"] for row in table["rows"] if row.get("interval_method")}),
        "shared_preparation": table.get("shared_preparation", []),
        "smoke": table.get("budget") == "smoke",
        "seed_note": table.get("seed_note"),
        "compared_metrics": list(COMPARED_METRICS),
        "ablation_metrics": list(ABLATION_METRICS),
        "ranking": table.get("ranking") or {},
        "ranks_plot": _ranks_plot(table, plot_dir / f"{slug}-ranks.svg", title),
        "rows": rows,
        "tradeoff": _tradeoff_plot(table, plot_dir / f"{slug}-tradeoff.svg", title),
        "spread": _spread_plot(table, records, plot_dir / f"{slug}-seeds.svg", title),
    }


def _ranks_plot(table: dict, path: Path, title: str) -> str | None:
    ranks = {r["method"]: r.get("mean_rank") for r in table["rows"] if r["status"] == "ok"}
    if not (table.get("ranking") or {}).get("blocks") or len(ranks) < 2:
        return None
    cd = table["ranking"].get("critical_difference")
    return f"plots/{plots.critical_difference_plot(ranks, cd, path, f'mean ranks: {title}').name}"


def _tradeoff_plot(table: dict, path: Path, title: str) -> str:
    return f"plots/{plots.tradeoff(tradeoff_points(table), path, title).name}"


def tradeoff_points(table: dict) -> list[dict]:
    """The accuracy-vs-eod_max points of a leaderboard table: one per finished method, with across-seed std."""
    return [
        {
            "label": r["method"] + (f" [{r['variant']}]" if r.get("variant") else ""),
            "acc": r["acc"]["mean"],
            "eod_max": r["eod_max"]["mean"],
            "acc_err": r["acc"].get("std"),
            "eod_err": r["eod_max"].get("std"),
            "degenerate": bool(r.get("degenerate")),
        }
        for r in table["rows"]
        if r["status"] == "ok"
    ]


def _spread_plot(table: dict, records: dict[str, RunRecord], path: Path, title: str) -> str:
    series = {
        r["method"]: {
            m: [records[s["run_id"]].test_metric(m) for s in r["selected"] if s["run_id"] in records]
            for m in SPREAD_METRICS
        }
        for r in table["rows"]
        if r["status"] == "ok"
    }
    return f"plots/{plots.seed_spread(series, SPREAD_METRICS, path, f'per-seed spread: {title}').name}"


def method_views(
    board: dict, tables: list[dict], records: dict[str, RunRecord], plot_dir: Path
) -> list[dict[str, Any]]:
    """One page per method: its metadata and, per leaderboard it is on, trials, groups and failures."""
    pages: dict[str, dict[str, Any]] = {}
    for table, view in zip(board["tables"], tables):
        for row in table["rows"]:
            runs = _row_runs(row, records)
            info = runs[0].method_info if runs else None
            page = pages.setdefault(
                row["method"],
                {
                    "name": row["method"],
                    "page": method_page(row["method"]),
                    "description": row["description"],
                    "citation": row["citation"],
                    "requires": (info.requires if info else "") or "-",
                    "sections": [],
                },
            )
            page["sections"].append(_section(row, view, records, plot_dir))
    return [pages[name] for name in sorted(pages)]


def _section(row: dict, view: dict, records: dict[str, RunRecord], plot_dir: Path) -> dict[str, Any]:
    selected = []
    for s in row["selected"]:
        record = records.get(s["run_id"])
        selected.append(
            {
                "seed": s["seed"],
                "trial": s["trial"],
                "run_id": s["run_id"],
                "record": f"records/{slugify(s['run_id'])}.json",
                "commit": ((record.git_commit if record else None) or "unknown")[:12],
                "config": config_text(record.config if record else None),
                "hparams": [(k, show_value(v)) for k, v in sorted(s["hparams"].items())],
                "metrics": [fmt_value(record.test_metric(m) if record else None) for m in TABLE_METRICS],
            }
        )
    groups_plot = None
    if row["per_group"]:
        path = plot_dir / f"{view['id']}-{slugify(row['method'])}-groups.svg"
        title = f"{row['method']}: {view['title']}"
        groups_plot = f"plots/{plots.group_bars(row['per_group'], path, title).name}"
    return {
        "table": view,
        "labels_used": row["labels_used"],
        "variant": row.get("variant"),
        "selected": selected,
        "per_group": [
            {
                "group": g["group"],
                "n": g["n"],
                "values": [fmt_value(g.get(k)) for k in ("acc", "tpr", "fpr", "selection_rate")],
            }
            for g in row["per_group"]
        ],
        "groups_plot": groups_plot,
        "failed": [
            {"run_id": f["run_id"], "error": f["error"], "traceback": traceback_of(records.get(f["run_id"]))}
            for f in row["failed_runs"]
        ],
    }


def traceback_of(record: RunRecord | None) -> str | None:
    return record.traceback if record is not None else None


def fmt_value(value: float | None) -> str:
    return f"{value:.3f}" if plots.defined(value) else "n/a"


def environment() -> Environment:
    """Jinja2 over the packaged templates, autoescaping every value."""
    return Environment(
        loader=PackageLoader("fairfacebench.leaderboard", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def config_text(config: dict | None) -> str:
    """The resolved plan of a run, as one line of key=value pairs (JSON values)."""
    if not config:
        return "not recorded"
    return ", ".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(config.items()))


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


def write_data(board: dict, out: Path) -> dict[str, Path]:
    """leaderboard.json, .csv and .md next to the pages, from the same board the pages show."""
    return write_exports(board, out)


def build_site(store_dir: Path | str, out_dir: Path | str, rule: str = "val_acc") -> dict[str, Path]:
    """Render the whole site into `out_dir` (new, empty or an earlier site); returns the index and data paths."""
    out = Path(out_dir)
    earlier = site_folder(out)
    board = build(store_dir, rule)
    records = {r.run_id: r for r in ResultStore(store_dir, create=False).records()}
    out.mkdir(parents=True, exist_ok=True)
    remove_built(out, earlier)
    (out / "plots").mkdir(exist_ok=True)
    (out / "static").mkdir(exist_ok=True)
    tables = [table_view(t, records, out / "plots") for t in board["tables"]]
    methods = method_views(board, tables, records, out / "plots")
    definitions = next((r.metric_definitions for r in records.values() if r.metric_definitions), {})
    metrics = [
        {"name": m, "better": "higher" if m in HIGHER_IS_BETTER else "lower", "definition": definitions.get(m, "")}
        for m in TABLE_METRICS
    ]
    common = {"version": __version__, "n_records": len(records), "metrics": metrics, "smoke_banner": SMOKE_BANNER}
    record_files = write_records(records, out / "records")
    env = environment()
    paths = write_data(board, out)
    paths["index"] = out / "index.html"
    paths["index"].write_text(env.get_template("index.html").render(tables=tables, methods=methods, **common))
    page = env.get_template("method.html")
    for method in methods:
        (out / method["page"]).write_text(page.render(method=method, **common))
    for name in STATIC_FILES:
        (out / "static" / name).write_text((files("fairfacebench.leaderboard") / "static" / name).read_text())
    built = [*paths.values(), *(out / m["page"] for m in methods), *(out / "static" / n for n in STATIC_FILES)]
    built += [*record_files, *(out / p for p in plot_files(tables, methods))]
    (out / MARKER).write_text(json.dumps({"files": sorted({p.relative_to(out).as_posix() for p in built})}, indent=1))
    return paths


def plot_files(tables: list[dict], methods: list[dict]) -> list[str]:
    """The plots a build wrote, as paths relative to the site folder."""
    found = [p for view in tables for p in (view["tradeoff"], view["spread"])]
    return found + [s["groups_plot"] for m in methods for s in m["sections"] if s["groups_plot"]]
