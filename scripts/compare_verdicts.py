"""Which verdicts of one board survive on another: the methods' verdicts against erm (and each system's against its
ablation) side by side, per task, from two built boards' `leaderboard.json` (issue 25: which conclusions of the v1
board survived tuning and convergence).

A board's verdict is the leaderboard's sentence per method (`leaderboard/verdict.py`: fairer in eod_max at no
significant accuracy cost, at a cost, not distinguishable, less fair, not judged), under the selection rule the
board was built with; build each board with the rule to compare (`fairbench leaderboard tables STORE --out DIR
--selection val_wga`).  Tables are matched by task and encoder (`vlm`); a method on one board only is listed with
'—' on the other.  A method whose version differs between the boards (its algorithm changed under the same name,
e.g. `undersample` 1 -> 2, per-epoch redraw -> fixed subset) has the versions after its status: its verdicts are
of two different methods.

    python scripts/compare_verdicts.py OLD/leaderboard.json NEW/leaderboard.json [--names v1 v2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KINDS = {"verdict": "against erm", "ablation_verdict": "against its ablation"}


def where(table: dict) -> tuple[str, str]:
    """A table's (task, encoder): what matches tables across the boards."""
    return table["task"], table["comparison"].get("vlm", "none")


def verdicts(board: dict) -> dict[tuple[str, str, str], dict[str, str]]:
    """(task, vlm, kind) -> {method or 'system over ablation' (its tier left out): category}."""
    out: dict[tuple[str, str, str], dict[str, str]] = {}
    for table in board["tables"]:
        for kind in KINDS:
            found = out.setdefault((*where(table), kind), {})
            for entry in table.get(kind) or []:
                for name in entry["methods"]:
                    found[name.split(" (")[0]] = entry["category"]
    return out


def versions(board: dict) -> dict[tuple[str, str], dict[str, int]]:
    """(task, vlm) -> {method: method_version of its row}."""
    return {
        where(table): {row["method"]: row.get("method_version") for row in table["rows"]} for table in board["tables"]
    }


def judged(category: str) -> bool:
    """A verdict that says something: the method is on the board and was judged (enough shared seeds)."""
    return category != "—" and not category.startswith("not judged")


def side_by_side(old: dict, new: dict, names: tuple[str, str]) -> list[str]:
    """Markdown lines: per (task, encoder, kind) a table of method, old verdict, new verdict, same or changed."""
    before, after = verdicts(old), verdicts(new)
    version_before, version_after = versions(old), versions(new)
    lines = [f"Selection rule: {names[0]} {old['selection_rule']}, {names[1]} {new['selection_rule']}.", ""]
    for key in sorted(set(before) | set(after)):
        task, vlm, kind = key
        a, b = before.get(key, {}), after.get(key, {})
        if not a and not b:
            continue
        old_versions, new_versions = version_before.get((task, vlm), {}), version_after.get((task, vlm), {})

        def renewed(method: str) -> bool:
            return old_versions.get(method) != new_versions.get(method)

        lines += [
            f"### {task}, encoder {vlm}: {KINDS[kind]}",
            "",
            f"| | {names[0]} | {names[1]} | |",
            "|---|---|---|---|",
        ]
        for method in sorted(set(a) | set(b)):
            va, vb = a.get(method, "—"), b.get(method, "—")
            status = ("same" if va == vb else "changed") if judged(va) and judged(vb) else ""
            if status and renewed(method):
                status += f" (version {old_versions.get(method)} -> {new_versions.get(method)})"
            lines.append(f"| {method} | {va} | {vb} | {status} |")
        both = [m for m in set(a) & set(b) if judged(a[m]) and judged(b[m])]
        kept = sum(a[m] == b[m] for m in both)
        unjudged = len(set(a) & set(b)) - len(both)
        other_versions = sum(renewed(m) for m in both)
        notes = [f"{unjudged} more not judged on one or both"] if unjudged else []
        if other_versions:
            notes.append(f"{other_versions} of the {len(both)} a different version of the method on each board")
        lines += [
            "",
            f"{kept} of {len(both)} methods judged on both boards keep their verdict"
            + (f" ({'; '.join(notes)})." if notes else "."),
            "",
        ]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--names", nargs=2, default=("old", "new"))
    args = p.parse_args()
    boards = []
    for path in (args.old, args.new):
        if not path.is_file():
            raise SystemExit(f"{path}: no built board; run `fairbench leaderboard tables STORE --out DIR` first")
        boards.append(json.loads(path.read_text()))
    print("\n".join(side_by_side(*boards, tuple(args.names))))


if __name__ == "__main__":
    main()
