"""Markdown tables of a result store for the README and closing notes (`python scripts/board_summary.py --help`).

Prints, per comparison: mean ± std over seeds of the headline metrics (`--intervals`: with the board's 95%
interval), the paired differences against erm, each system against its own ablation, the verdict in words under
the selection rule (`--rule`), each method's forward samples and fit time, and the total fit time of the store's
runs; `--regimes` adds, with a search, each method's defaults beside each selection regime's pick; `--plot` writes
the accuracy-vs-eod_max plot of each table (the one the site shows) and `--figures` links it under the table.
`--tasks` and `--vlm` keep (and order) some tables: the README's block is one such call, checked against the store
by `scripts/generated_docs.py`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tabulate import tabulate

from fairfacebench.leaderboard import plots
from fairfacebench.leaderboard.model import (
    MIN_SEEDS,
    MetricSummary,
    PairedDifference,
    RegimeResult,
    Row,
    Table,
    defined,
)
from fairfacebench.leaderboard.render import difference_text, regime_difference_text, regime_tested
from fairfacebench.leaderboard.search import ORACLE
from fairfacebench.leaderboard.site import tradeoff_points
from fairfacebench.leaderboard.tables import build
from fairfacebench.store import ResultStore

METRICS = ("acc", "eod_max", "eopp_diff", "dp_diff", "wga", "cell_acc_std")
PAIRED_METRICS = ("acc", "eod_max")
ABLATION_METRICS = ("acc", "eod_max", "wga", "cell_acc_std")
METRIC_HEADERS = ["method", "tier", "seeds", *METRICS, "forward samples", "fit time (s)", "flags"]
BOOTSTRAP = (
    "mean [95% crossed paired bootstrap interval over seeds and shared test rows]; tied: not significant after Holm"
)
ERM_CAPTION = f"Paired against erm ({BOOTSTRAP})"
ERM_HEADERS = ["method", *[f"Δ{k}" for k in PAIRED_METRICS]]
ABLATION_CAPTION = f"Each system against its own ablation, system − ablation ({BOOTSTRAP})"
ABLATION_HEADERS = ["system − ablation", *[f"Δ{k}" for k in ABLATION_METRICS]]
REGIMES_CAPTION = (
    "Default vs tuned: the trial each regime picks on the search seeds, its acc / eod_max over the seeds it ran, and "
    "its eod_max − the defaults' (paired over the seeds both ran, Holm per regime; 'not judged' below 3 seeds; 'as "
    "val_acc': the trial an earlier regime picked, tested there); the test oracle picks by test accuracy on the "
    "search seeds, an upper bound on selection for accuracy that no method may claim (its pick runs on the final "
    "seeds when the plan's final_selection names it; else only when a rule picks the same trial)"
)


def cell(summary: MetricSummary, interval: bool = False) -> str:
    if not defined(summary.mean):
        return "n/a"
    text = f"{summary.mean:.3f}" + (f" ± {summary.std:.3f}" if defined(summary.std) else "")
    if interval and summary.interval and None not in summary.interval:
        text += f" [{summary.interval[0]:.3f}, {summary.interval[1]:.3f}]"
    return text


def paired(difference: PairedDifference | None) -> str:
    """The board's `difference_text`, but blank when undefined and the bare mean when there is no interval."""
    if difference is None or difference.mean is None:
        return ""
    lo, hi = difference.ci95 or (None, None)
    if lo is not None and hi is not None:
        return difference_text(difference)
    return f"{difference.mean:+.3f}" + (f" not judged (n={difference.n})" if difference.n < MIN_SEEDS else "")


def metrics_row(r: Row, intervals: bool = False) -> list:
    flags = ", ".join(f.code for f in r.flags)
    if not r.ok:
        return [r.label, r.tier, "failed", *[""] * (len(METRICS) + 2), flags]
    compute = [f"{r.forward_samples:,.0f}", f"{r.fit_time_s:,.0f}"]
    return [r.label, r.tier, r.seeds, *[cell(r.summary(k), intervals) for k in METRICS], *compute, flags]


def github(rows: list[list], headers: list[str], **options) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", **options)


def print_table(table: Table, order: list[str], intervals: bool = False, regimes: bool = False) -> None:
    """The headline metrics, then the paired differences against erm and of each system against its ablations,
    (`regimes`) default vs tuned per selection regime, then the verdict in words."""
    rows = {r.method: r for r in table.rows}
    shown = [rows[m] for m in ([m for m in order if m in rows] or sorted(rows))]
    named = "".join(f" / {k} {v}" for k, v in table.distinguished_by.items() if k != "data_fingerprint")
    print(f"### {table.dataset} / {table.task} / {table.budget}{named}\n")
    print(github([metrics_row(r, intervals) for r in shown], METRIC_HEADERS))
    print_paired(ERM_CAPTION, ERM_HEADERS, [erm_row(r) for r in shown if r.vs_erm])
    print_paired(ABLATION_CAPTION, ABLATION_HEADERS, [ablation_row(r) for r in shown if r.system_vs_ablation])
    if regimes:
        print_regimes(table, order)
    if table.verdict or table.ablation_verdict:
        print(f"\nVerdict, selection rule {table.selection_rule.split(':')[0]} (paired, Holm-corrected):\n")
    for against, verdicts in (("Against erm", table.verdict), ("Against its own ablation", table.ablation_verdict)):
        for v in verdicts:
            print(f"- {against}, {v.category}: {', '.join(v.methods)}")


def print_regimes(table: Table, order: list[str]) -> None:
    """With a search: per method, the defaults and each regime's pick on the search seeds (trial: acc / eod_max over
    the seeds it ran, and its eod_max difference to the defaults, Holm-corrected per regime); the test oracle is an
    upper bound on selection for accuracy that no method may claim."""
    rows = {r.method: r for r in table.ok_rows if r.regimes}
    shown = [rows[m] for m in ([m for m in order if m in rows] or sorted(rows))]
    if not shown:
        return
    names = list(dict.fromkeys(g.regime for r in shown for g in r.regimes))
    print(f"\n{REGIMES_CAPTION}:\n")
    headers = ["method", *[f"{n} (upper bound)" if n == ORACLE else n for n in names]]
    found = [{g.regime: g for g in r.regimes} for r in shown]
    body = [[r.method, *[regime_cell(by_name.get(n)) for n in names]] for r, by_name in zip(shown, found, strict=True)]
    print(github(body, headers, disable_numparse=True))


def regime_cell(g: RegimeResult | None) -> str:
    """'trial 2 (5 seeds): 0.884 / 0.446, Δeod_max -0.031 [-0.052, -0.011]', or '..., the defaults' when the regime
    picks trial 0; 'no trial finished' when every trial failed on the search seeds; '' when the method reports no
    such regime (its search still running)."""
    if g is None:
        return ""
    if g.trial is None:
        return "no trial finished"
    text = f"trial {g.trial} ({len(g.seeds)} seed{'s' if len(g.seeds) != 1 else ''}): "
    text += f"{g.metrics['acc'].mean:.3f} / {g.metrics['eod_max'].mean:.3f}"
    difference = regime_difference_text(g, "eod_max")  # 'the defaults', 'as val_acc', ... when there is none
    label = "Δeod_max " if regime_tested(g) else ""
    return text + (f", {label}{difference}" if difference else "")


def erm_row(r: Row) -> list[str]:
    return [r.method, *[paired(r.vs_erm[k]) for k in PAIRED_METRICS]]


def ablation_row(r: Row) -> list[str]:
    return [f"{r.ablation_of} − {r.method}", *[paired(r.system_vs_ablation.get(k)) for k in ABLATION_METRICS]]


def print_paired(caption: str, headers: list[str], body: list[list]) -> None:
    if body:
        print(f"\n{caption}:\n")
        print(github(body, headers, disable_numparse=True))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("store")
    p.add_argument("--methods", default="", help="comma-separated subset and order (default: every method)")
    p.add_argument("--plot", default="", help="write each table's accuracy-vs-eod_max plot to PLOT-<n>.svg")
    p.add_argument("--rule", default="val_acc", help="the selection rule the board is built with (default: val_acc)")
    p.add_argument("--intervals", action="store_true", help="show each mean's 95%% interval after its std")
    p.add_argument(
        "--defaults", action="store_true", help="every method at its defaults (trial 0), as if no search had run"
    )
    p.add_argument("--regimes", action="store_true", help="with a search: default vs each regime's pick per method")
    p.add_argument("--tasks", default="", help="comma-separated tasks: only their tables, in this order")
    p.add_argument("--vlm", default="", help="only the tables of this encoder (e.g. none)")
    p.add_argument("--figures", default="", help="link each table's plot, FIGURES-<n>.svg (as --plot writes it)")
    p.add_argument("--no-total", action="store_true", help="leave out the store's total run time")
    args = p.parse_args()
    order = [m for m in args.methods.split(",") if m]
    tasks = [t for t in args.tasks.split(",") if t]
    tables = list(enumerate(build(args.store, args.rule, defaults_only=args.defaults).tables))
    if args.vlm:
        tables = [(n, t) for n, t in tables if t.comparison.get("vlm", "none") == args.vlm]
    if tasks:
        tables = sorted(((n, t) for n, t in tables if t.task in tasks), key=lambda nt: tasks.index(nt[1].task))
    if not tables:
        raise SystemExit(f"{args.store}: no table of task(s) {tasks or 'any'} and encoder {args.vlm or 'any'}")
    for n, table in tables:  # n: the table's place on the whole board, which names its plot
        print_table(table, order, args.intervals, args.regimes)
        title = f"{table.dataset} {table.task} {table.budget}"
        if args.plot:
            print(f"plot: {plots.tradeoff(tradeoff_points(table), Path(f'{args.plot}-{n}.svg'), title)}")
        if args.figures:
            print(f"\n![accuracy vs eod_max, {title}]({args.figures}-{n}.svg)")
        print()
    if not args.no_total:
        total = sum(r.wall_time_s or 0 for r in ResultStore(args.store).records())
        print(f"total run wall time in the store: {total / 3600:.2f} h (sum over runs; two run at a time)")


if __name__ == "__main__":
    main()
