"""The compute a result store holds, by task and phase of the protocol, and by host: how many runs, how many
failed, and their run time summed (each record's `wall_time_s`: loading data, fitting, scoring).

Phases, from each record's trial, seed and encoder: `defaults` (trial 0), `search` (a trial beyond the defaults on
a search seed, `search_seeds` in the run's plan), `picks` (a trial beyond the defaults on another seed: a selection
rule's pick), `oracle picks` (one the test oracle picks and no rule of the plan's `final_selection` does: what
running the oracle on the final seeds costs), `trials` (a trial beyond the defaults in a plan without a search: every
trial on every seed), and,
for a run with an encoder (`--vlm`), the same names with the encoder after them. A store holds each run id once: a
failed run computed again (`--retry-failed`) replaces its record, so the time of the failed attempt is not counted
here (docs/PERFORMANCE.md's table of sittings names those).

    python scripts/board_compute.py stores/utkface-v2
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import dataclass, field

from tabulate import tabulate

from fairfacebench.leaderboard.search import picked_trial, search_seeds
from fairfacebench.plan import ORACLE, final_rule
from fairfacebench.plugins import registry
from fairfacebench.provenance import hardware_of
from fairfacebench.record import RunRecord
from fairfacebench.store import ResultStore

PHASES = ("defaults", "search", "picks", "oracle picks", "trials")
Cell = tuple[str, str, int]  # a run's comparison, method and method version: one search


def cell(record: RunRecord) -> Cell:
    return record.spec.comparison_id, record.method, record.spec.method_version


def search_seed_count(record: RunRecord) -> int:
    return int((record.config or {}).get("search_seeds") or 0)


def rules_picks(records: list[RunRecord]) -> dict[Cell, set[int | None]]:
    """Per search whose plan runs the test oracle's pick on the final seeds (`final_selection` names it), the trials
    its selection rules pick on the search seeds, as `fairbench run` picks them (the oracle left out)."""
    runs: dict[Cell, list[RunRecord]] = defaultdict(list)
    named: dict[Cell, set[str]] = defaultdict(set)
    for r in records:
        runs[cell(r)].append(r)
        named[cell(r)] |= set((r.config or {}).get("final_selection") or ())
    lookup = registry().selection_rule
    return {
        c: {picked_trial(cell_runs, search_seeds(cell_runs), final_rule(n, lookup)) for n in named[c] - {ORACLE}}
        for c, cell_runs in runs.items()
        if ORACLE in named[c]
    }


def phase(record: RunRecord, picked: dict[Cell, set[int | None]] | None = None) -> tuple[str, str]:
    """('defaults', 'search', 'picks', 'oracle picks' or 'trials'; the run's encoder, 'none' without one).
    `picked` (`rules_picks`) tells the oracle's picks from the rules' where the plan runs both; without it, and
    in a search whose plan does not name the oracle, every pick is 'picks'."""
    searched = search_seed_count(record)
    if record.trial == 0:
        name = "defaults"
    elif not searched:  # no search in the plan: every trial on every seed
        name = "trials"
    elif record.seed < searched:
        name = "search"
    else:
        rules = (picked or {}).get(cell(record))
        name = "picks" if rules is None or record.trial in rules else "oracle picks"
    return name, record.spec.vlm or "none"


def phase_text(name: str, encoder: str) -> str:
    """The phase's name, with the encoder after it when the run has one."""
    return name if encoder == "none" else f"{name}, encoder {encoder}"


@dataclass
class Tally:
    runs: int = 0
    failed: int = 0
    seconds: float = 0.0
    hosts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, record: RunRecord) -> None:
        self.runs += 1
        self.failed += not record.ok
        self.seconds += record.wall_time_s or 0.0
        self.hosts[hardware_of(record.host)] += 1


def tallies(records: list[RunRecord]) -> dict[tuple[str, str, str], Tally]:
    """(task, phase, encoder) -> its tally: by task, the runs without an encoder first, phases in PHASES order."""
    found: dict[tuple[str, str, str], Tally] = defaultdict(Tally)
    picked = rules_picks(records)
    for r in records:
        found[(r.spec.task, *phase(r, picked))].add(r)
    return dict(sorted(found.items(), key=lambda kv: (kv[0][0], kv[0][2] != "none", PHASES.index(kv[0][1]))))


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f}"


def report(records: list[RunRecord], workers: int = 2) -> list[str]:
    """The markdown table and the totals."""
    found = tallies(records)
    body = [
        [task, phase_text(name, encoder), t.runs, t.failed, hours(t.seconds)]
        + ["; ".join(f"{h}: {n}" for h, n in sorted(t.hosts.items()))]
        for (task, name, encoder), t in found.items()
    ]
    headers = ["task", "phase", "runs", "failed", "run hours", "runs per host"]
    runs, failed = sum(t.runs for t in found.values()), sum(t.failed for t in found.values())
    seconds = sum(t.seconds for t in found.values())
    return [
        tabulate(body, headers, tablefmt="github", disable_numparse=True),
        "",
        f"In all: {runs} runs ({failed} failed), {hours(seconds)} run hours summed: about "
        f"{hours(seconds / workers)} wall hours at {workers} runs at a time.",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("store")
    p.add_argument("--workers", type=int, default=2, help="runs at a time, for the wall hours (default 2)")
    args = p.parse_args()
    records = list(ResultStore(args.store).records())
    if not records:
        raise SystemExit(f"{args.store}: no run records (is it a result store?)")
    print("\n".join(report(records, args.workers)))


if __name__ == "__main__":
    main()
