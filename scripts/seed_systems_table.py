"""The seed systems on real faces (issue 26, item 4), read from a built board: one table per task.

For clip-cluster and ssl-pipeline, with the face descriptor and (for contrast) with the board's ImageNet
features, and for their ablations and erm: test acc, eod_max and wga (mean [interval] over seeds), the paired
differences against erm and of each system against its ablation (crossed bootstrap, Holm within the board's
tables), and how the stages worked (the harness's diagnostics, mean over seeds): the inferred groups' AMI with the
true groups, the pseudo-labels' accuracy per true group, and the Meta-Weight-Net's mean weight per true group and
label correctness.  Everything comes from `leaderboard.json` (`fairbench leaderboard tables STORE` writes it), or
with `--defaults` from the board of every method at its defaults, built here from the store (a search in the store
then leaves the table as it was: the face-descriptor comparison has no search, so its rows are always defaults).

    python scripts/seed_systems_table.py stores/utkface-v2 [--json STORE/leaderboard.json | --defaults]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fairfacebench.leaderboard.tables import plain_board

SYSTEMS = ("clip-cluster", "clip-cluster:no-resampling", "ssl-pipeline", "ssl-pipeline:no-curation",
           "ssl-pipeline:no-meta-weights")  # fmt: skip
REFERENCE = "erm"
ENCODERS = {"face-descriptor": "face descriptor", "none": "ImageNet MobileNetV2"}


def interval(cell: dict | None) -> str:
    """'mean [lo, hi]' of a row's metric (mean alone without an interval; '—' when absent)."""
    if not cell or cell.get("mean") is None:
        return "—"
    low, high = cell.get("interval") or cell.get("ci95") or (None, None)
    sign = "+" if "ci95" in cell else ""
    mean = f"{cell['mean']:{sign}.3f}"
    if low is None:
        return mean
    tied = " tied" if cell.get("tied") else ""
    return f"{mean} [{low:{sign}.3f}, {high:{sign}.3f}]{tied}"


def mechanism(row: dict, prefix: str) -> str:
    """The row's diagnostics whose quantity starts with ``prefix``, as 'name mean' pairs ('—' when none)."""
    found = [m for m in row.get("mechanisms") or [] if m["quantity"].startswith(prefix)]
    if not found:
        return "—"
    return ", ".join(f"{m['quantity'][len(prefix) :].lstrip('.')} {m['mean']:.3f}".lstrip() for m in found)


def table(board: dict, task: str) -> list[str]:
    """Markdown lines for one task: every seed-system row of every encoder's comparison."""
    lines = [
        f"### {task}",
        "",
        "| method | encoder | seeds | acc | eod_max | wga | − erm: Δacc | − erm: Δeod_max | system − this ablation: "
        "Δacc | Δeod_max | AMI with true groups | pseudo-labels right, per true group | "
        "mean meta-weight per true group.(right/wrong label) |",
        "|" + "---|" * 13,
    ]
    comparisons = [t for t in board["tables"] if t["task"] == task]
    for encoder, name, comparison in by_encoder(comparisons):
        rows = {r["method"]: r for r in comparison["rows"]}
        for method in (REFERENCE, *SYSTEMS):
            row = rows.get(method)
            if row is None or (encoder == "none" and method == REFERENCE and len(comparisons) > 1):
                continue
            vs_erm = row.get("vs_erm") or {}
            ablation = row.get("system_vs_ablation") or {}
            lines.append(
                "| "
                + " | ".join(
                    [
                        method,
                        name if method != REFERENCE else "—",
                        str(row.get("seeds")),
                        interval(row.get("acc")),
                        interval(row.get("eod_max")),
                        interval(row.get("wga")),
                        interval(vs_erm.get("acc")),
                        interval(vs_erm.get("eod_max")),
                        interval(ablation.get("acc")),
                        interval(ablation.get("eod_max")),
                        mechanism(row, "ami_with_true_groups"),
                        mechanism(row, "accuracy_all_per_group"),
                        mechanism(row, "weight_mean_per_true_group"),
                    ]
                )
                + " |"
            )
    return lines + ["", *hardware(comparisons), ""]


def by_encoder(comparisons: list[dict]):
    """(encoder, its display name, comparison) for the task's comparisons, in ENCODERS order."""
    for encoder, name in ENCODERS.items():
        for comparison in comparisons:
            if comparison["comparison"].get("vlm") == encoder:
                yield encoder, name, comparison


def hardware(comparisons: list[dict]) -> list[str]:
    """Where each encoder's comparison ran: a row whose seeds ran on different machines says so in its flags."""
    lines = []
    for _, name, comparison in by_encoder(comparisons):
        ran = "; ".join(f"{h['hardware']}: {h['runs']} runs" for h in comparison.get("hardware") or [])
        mixed = [
            f"{r['method']} ({f['detail']})"
            for r in comparison["rows"]
            for f in r.get("flags") or []
            if f["code"] == "mixed-hardware"
        ]
        also = f" Mixed: {'; '.join(mixed)}." if mixed else ""
        lines.append(f"Hardware ({name}): {ran or 'not recorded'}.{also}")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("store", type=Path)
    p.add_argument("--json", type=Path, help="the board's leaderboard.json (default: STORE/leaderboard.json)")
    p.add_argument("--defaults", action="store_true", help="build the board of every method at its defaults instead")
    args = p.parse_args()
    if args.defaults and args.json:
        p.error("--defaults builds the board from STORE; --json reads a built one: pass one of them")
    path = args.json or args.store / "leaderboard.json"
    if args.defaults:
        board, source = plain_board(args.store, "defaults"), f"{args.store}, every method at its defaults"
    elif path.is_file():
        board, source = json.loads(path.read_text()), str(path)
    else:
        raise SystemExit(f"{path}: no built board; run `fairbench leaderboard tables {args.store}` first")
    tasks = sorted({t["task"] for t in board["tables"]})
    print(f"Selection rule: {board['selection_rule']}. Source: {source}.\n")
    print(
        "Mean [95% interval] over seeds; Δ: paired mean [95% interval] from the crossed bootstrap over seeds and the "
        "shared test rows, 'tied' when not significant after Holm over the board's column. The system − ablation "
        "columns are on the ablation's row. Stage diagnostics are means over seeds.\n"
    )
    for task in tasks:
        print("\n".join(table(board, task)))


if __name__ == "__main__":
    main()
