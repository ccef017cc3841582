"""Markdown tables of a result store for the README and closing notes (`python scripts/board_summary.py --help`).

Prints, per comparison: mean ± std over seeds of the headline metrics, the paired differences against erm,
each system against its own ablation, each method's forward samples and fit time, and the total fit time of
the store's runs; `--plot` writes the accuracy-vs-eod_max plot of each table (the one the site shows).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from tabulate import tabulate

from fairfacebench.leaderboard import plots
from fairfacebench.leaderboard.site import tradeoff_points
from fairfacebench.leaderboard.tables import build
from fairfacebench.store import ResultStore

METRICS = ("acc", "eod_max", "eopp_diff", "dp_diff", "wga", "cell_acc_std")


def cell(summary: dict) -> str:
    mean, std = summary.get("mean"), summary.get("std")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    return f"{mean:.3f}" + (f" ± {std:.3f}" if std is not None and not math.isnan(std) else "")


def paired(summary: dict | None) -> str:
    if not summary or summary.get("mean") is None:
        return ""
    lo, hi = summary.get("ci95") or (None, None)
    return f"{summary['mean']:+.3f}" + (f" [{lo:+.3f}, {hi:+.3f}]" if lo is not None and hi is not None else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("store")
    p.add_argument("--methods", default="", help="comma-separated subset and order (default: every method)")
    p.add_argument("--plot", default="", help="write each table's accuracy-vs-eod_max plot to PLOT-<n>.svg")
    args = p.parse_args()
    order = [m for m in args.methods.split(",") if m]
    for n, table in enumerate(build(args.store)["tables"]):
        rows = {r["method"]: r for r in table["rows"]}
        names = [m for m in order if m in rows] or sorted(rows)
        print(f"### {table['dataset']} / {table['task']} / {table['budget']}\n")
        body = []
        for m in names:
            r = rows[m]
            label = (
                m
                + (f" [{r['variant']}]" if r.get("variant") else "")
                + (" (degenerate)" if r.get("degenerate") else "")
            )
            if r["status"] != "ok":
                body.append([label, "failed", *[""] * (len(METRICS) + 2)])
                continue
            body.append(
                [
                    label,
                    r["seeds"],
                    *[cell(r[k]) for k in METRICS],
                    f"{r['forward_samples']:,.0f}",
                    f"{r['fit_time_s']:,.0f}",
                ]
            )
        print(
            tabulate(body, headers=["method", "seeds", *METRICS, "forward samples", "fit time (s)"], tablefmt="github")
        )
        vs = [[m, *[paired(rows[m]["vs_erm"][k]) for k in ("acc", "eod_max")]] for m in names if rows[m].get("vs_erm")]
        if vs:
            print("\nPaired against erm (mean [95% t-interval] over seeds):\n")
            print(tabulate(vs, headers=["method", "Δacc", "Δeod_max"], tablefmt="github", disable_numparse=True))
        ablated = [m for m in names if rows[m].get("system_vs_ablation")]
        if ablated:
            print("\nEach system against its own ablation, system − ablation (mean [95% t-interval] over seeds):\n")
            keys = ("acc", "eod_max", "wga", "cell_acc_std")
            body = [
                [f"{rows[m]['ablation_of']} − {m}", *[paired(rows[m]["system_vs_ablation"].get(k)) for k in keys]]
                for m in ablated
            ]
            print(
                tabulate(
                    body,
                    headers=["system − ablation", *[f"Δ{k}" for k in keys]],
                    tablefmt="github",
                    disable_numparse=True,
                )
            )
        if args.plot:
            title = f"{table['dataset']} {table['task']} {table['budget']}"
            print(f"plot: {plots.tradeoff(tradeoff_points(table), Path(f'{args.plot}-{n}.svg'), title)}")
        print()
    total = sum(r.wall_time_s or 0 for r in ResultStore(args.store).records())
    print(f"total run wall time in the store: {total / 3600:.2f} h (sum over runs; two run at a time)")


if __name__ == "__main__":
    main()
