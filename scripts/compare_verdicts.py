"""Which verdicts of one board survive on others: the methods' verdicts against erm (and each system's against its
ablation) side by side, per task, from two or more built boards' `leaderboard.json` (issue 25: which conclusions of
the v1 board survived tuning and convergence, and which methods each selection regime finds fairer than erm at no
accuracy cost).

A board's verdict is the leaderboard's sentence per method (`leaderboard/verdict.py`: fairer in eod_max at no
significant accuracy cost, at a cost, not distinguishable, less fair, not judged), under the selection rule the
board was built with.  A BOARD is a built board's `leaderboard.json` (`fairbench leaderboard tables STORE --out DIR
--selection val_wga`, or `--defaults` for every method at its defaults), or a store and a rule, `STORE:RULE`, built
here in memory with today's leaderboard code (`STORE:defaults`: every method at its defaults; a bare `STORE` is
`STORE:val_acc`; `"STORE:test oracle"`: the test oracle's board, built only here, an upper bound no method may
claim).  Tables are matched by task and encoder
(`vlm`); a method missing from a board is listed with '—' there.  A method whose version differs between the boards
(its algorithm changed under the same name, e.g. `undersample` 1 -> 2, per-epoch redraw -> fixed subset) has the
versions after its status: its verdicts are of different methods.  Under each table, one line per board names the
methods it finds fairer at no significant accuracy cost; a rule board whose table had no search (every row its trial
0: v1's board, the face-descriptor comparison) is named there too, as its verdicts are the defaults' whatever the rule.

    python scripts/compare_verdicts.py V1/leaderboard.json V2/leaderboard.json [--names v1 v2]
    python scripts/compare_verdicts.py stores/utkface-v2:defaults stores/utkface-v2:val_acc stores/utkface-v2:val_wga \
        --names default val_acc val_wga
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fairfacebench.leaderboard.model import DEFAULT
from fairfacebench.leaderboard.search import ORACLE
from fairfacebench.leaderboard.tables import plain_board
from fairfacebench.leaderboard.verdict import FAIRER_FREE

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


def at_defaults(board: dict) -> dict[tuple[str, str], set[str]]:
    """(task, vlm) -> the methods whose row stands for their defaults while their search, or their pick on the
    final seeds, is still running (`search_pending`): under a selection rule, their verdict is the defaults'."""
    return {where(t): {r["method"] for r in t["rows"] if r.get("search_pending")} for t in board["tables"]}


def unsearched(board: dict) -> set[tuple[str, str]]:
    """(task, vlm) of the tables with no search whose every row is its trial 0 (v1's board, the face-descriptor
    comparison): built under a rule, their verdicts are the defaults'.  Empty for a board at its defaults, which
    says so in its rule."""
    if board["selection_rule"] == DEFAULT:
        return set()
    return {
        where(t)
        for t in board["tables"]
        if not t.get("search") and all(s["trial"] == 0 for row in t["rows"] for s in row.get("selected") or [])
    }


def judged(category: str) -> bool:
    """A verdict that says something: the method is on the board and was judged (enough shared seeds)."""
    return category != "—" and not category.startswith("not judged")


def side_by_side(
    boards: list[dict], names: list[str], tasks: list[str] | None = None, vlm: str = "", against: str = ""
) -> list[str]:
    """Markdown lines: per (task, encoder, kind) a table of method and its verdict on each board, same or changed,
    then the methods each board finds fairer at no significant accuracy cost.  `tasks` (in order), `vlm` and
    `against` ('erm' or 'ablation') keep some tables only."""
    found, version_of = [verdicts(b) for b in boards], [versions(b) for b in boards]
    waiting = [at_defaults(b) for b in boards]
    no_search = [unsearched(b) for b in boards]
    every = "both boards" if len(boards) == 2 else f"all {len(boards)} boards"
    rules = ", ".join(f"{name} {board['selection_rule']}" for name, board in zip(names, boards, strict=True))
    lines = [f"Selection rule: {rules}.", ""]
    oracles = [name for name, board in zip(names, boards, strict=True) if board["selection_rule"] == ORACLE]
    if oracles:
        lines += [
            f"{', '.join(oracles)}: each method at the trial with the best test accuracy on the search seeds, erm "
            "too; an upper bound on selection for accuracy that no method may claim.",
            "",
        ]
    keys = sorted(set().union(*found))
    if tasks:
        keys = sorted((k for k in keys if k[0] in tasks), key=lambda k: tasks.index(k[0]))
    keys = [k for k in keys if (not vlm or k[1] == vlm) and (not against or KINDS[k[2]].endswith(against))]
    for key in keys:
        task, encoder, kind = key
        columns = [f.get(key, {}) for f in found]
        if not any(columns):
            continue
        method_versions = [v.get((task, encoder), {}) for v in version_of]
        pending = [w.get((task, encoder), set()) for w in waiting]

        def renewed(method: str) -> bool:
            return len({v.get(method) for v in method_versions}) > 1

        lines += [
            f"### {task}, encoder {encoder}: {KINDS[kind]}",
            "",
            f"| | {' | '.join(names)} | |",
            "|---|" + "---|" * len(names) + "---|",
        ]
        methods = sorted(set().union(*columns))

        def compared(method: str) -> bool:  # judged on every board, and on none at its defaults for a search
            return all(judged(c.get(method, "—")) and method not in w for c, w in zip(columns, pending, strict=True))

        for method in methods:
            said = [c.get(method, "—") for c in columns]
            status = ("same" if len(set(said)) == 1 else "changed") if compared(method) else ""
            if status and renewed(method):
                status += f" (version {' -> '.join(str(v.get(method)) for v in method_versions)})"
            cells = [text + (" †" if method in w else "") for text, w in zip(said, pending, strict=True)]
            lines.append(f"| {method} | {' | '.join(cells)} | {status} |")
        on_all = [m for m in methods if all(m in c for c in columns)]
        both = [m for m in on_all if compared(m)]
        kept = sum(len({c[m] for c in columns}) == 1 for m in both)
        other_versions = sum(renewed(m) for m in both)
        unjudged = [m for m in on_all if not all(judged(c[m]) for c in columns)]
        notes = [f"{len(unjudged)} more not judged on one or more"] if unjudged else []
        if len(on_all) > len(both) + len(unjudged):
            notes.append(f"{len(on_all) - len(both) - len(unjudged)} more at their defaults (†) on one or more")
        if other_versions:
            notes.append(f"{other_versions} of the {len(both)} a different version of the method across the boards")
        lines += [
            "",
            f"{kept} of {len(both)} methods judged on {every} keep their verdict"
            + (f" ({'; '.join(notes)})." if notes else "."),
            "",
        ]
        for name, column, w in zip(names, columns, pending, strict=True):
            free = sorted(m + (" †" if m in w else "") for m, category in column.items() if category == FAIRER_FREE)
            lines.append(f"- {name}, {FAIRER_FREE}: {', '.join(free) if free else 'none'}.")
        if any(pending):
            lines.append(
                "- †: at its defaults on that board, its search or its pick on the final seeds still running: the "
                "verdict is the defaults' (against erm at its defaults too), not the rule's pick."
            )
        plain = [name for name, n in zip(names, no_search, strict=True) if (task, encoder) in n]
        if plain:
            lines.append(
                f"- {', '.join(plain)}: no search on this table, every row at its defaults (trial 0): the verdicts "
                "are the defaults' under that board's rule."
            )
        lines.append("")
    return lines


def load_board(argument: str) -> dict:
    """A board as leaderboard.json holds it: read from a built board's file, or built from `STORE[:RULE]`."""
    path = Path(argument)
    if path.is_file():
        return json.loads(path.read_text())
    store, _, rule = argument.rpartition(":") if ":" in argument else (argument, "", "val_acc")
    if not Path(store).is_dir():
        raise SystemExit(
            f"{argument}: neither a built board's leaderboard.json nor a result store (STORE or STORE:RULE); build a "
            "board with `fairbench leaderboard tables STORE --out DIR`, or name a store directory"
        )
    return plain_board(store, rule)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "boards", nargs="+", metavar="BOARD", help="two or more: leaderboard.json files, or STORE[:RULE] to build"
    )
    p.add_argument("--names", nargs="+", default=None, help="one name per board (default: board 1, board 2, ...)")
    p.add_argument("--tasks", default="", help="comma-separated tasks: only their tables, in this order")
    p.add_argument("--vlm", default="", help="only the tables of this encoder (e.g. none)")
    p.add_argument(
        "--against",
        choices=("erm", "ablation"),
        default="",
        help="only the verdicts against erm, or against the ablation",
    )
    args = p.parse_args()
    names = args.names or [f"board {n}" for n in range(1, len(args.boards) + 1)]
    if len(args.boards) < 2 or len(names) != len(args.boards):
        p.error(f"{len(args.boards)} board(s) and {len(names)} name(s): pass two or more boards and one name each")
    boards = [load_board(board) for board in args.boards]
    tasks = [t for t in args.tasks.split(",") if t]
    print("\n".join(side_by_side(boards, names, tasks, args.vlm, args.against)).rstrip())


if __name__ == "__main__":
    main()
