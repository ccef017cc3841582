"""A store's hyperparameter search, read back: which trial each selection regime picks on the search seeds.

The plan (`plan.expand` / `expand_final`) runs trial 0 (the defaults) on every seed, trials > 0 on the search
seeds, then the trial each rule of `final_selection` picks there on the remaining seeds (the test oracle's too
when the plan names it). The leaderboard picks with the same function the plan used (`plan.search_choice`), so a
tuned row is the trial that was run on the other seeds. The test oracle (`plan.TestOracle`) reads test
accuracy: it is a regime here, and the rule of a board built to read it (`tables.build(store, ORACLE)`), but never a
registered selection rule.
"""

from __future__ import annotations

from typing import Any

from fairfacebench.leaderboard.model import DEFAULT, DEFAULT_TRIAL
from fairfacebench.plan import ORACLE, TestOracle, search_choice
from fairfacebench.record import RunRecord

REGIME_RULES = ("val_acc", "val_wga")  # without group labels; with validation group labels


def search_seeds(records: list[RunRecord]) -> list[int]:
    """The seeds of the search recorded in the runs' resolved plans (`search_seeds` N < `seeds`: seeds 0..N-1);
    [] for a store without a search (every trial on every seed) and for one whose search has not run a trial
    beyond the defaults yet (a board filled defaults first: nothing to tune between)."""
    if all(r.trial == DEFAULT_TRIAL for r in records):
        return []
    plans = [r.config or {} for r in records]
    searched = [(p.get("search_seeds") or 0, p.get("seeds") or 0) for p in plans]
    n = max((k for k, total in searched if 0 < k < total), default=0)
    return list(range(n))


def planned_trials(records: list[RunRecord]) -> int:
    """How many trials the store's plan runs per method (trial 0, the defaults, included): the largest
    `hparam_trials` in the runs' resolved plans, or one more than the largest trial stored (records without a plan)."""
    planned = [int((r.config or {}).get("hparam_trials") or 0) for r in records]
    return max(max(planned, default=0), max((r.trial + 1 for r in records), default=1))


def oracle_runs_final(records: list[RunRecord]) -> bool:
    """Whether the store's plan runs the test oracle's pick on the final seeds (its resolved `final_selection`
    names it in some run's record): then the oracle regime waits for it, like a rule's pick, and is tested."""
    return any(ORACLE in ((r.config or {}).get("final_selection") or ()) for r in records)


def trials_searched(runs: list[RunRecord], seeds: list[int], planned: int) -> int:
    """How many of a method's trials (0 .. planned-1, the defaults included) have a run, finished or failed, on every
    search seed: its search is complete when that is `planned`, and no regime picks before (`fairbench run`
    waits the same way, for every run on the search seeds, before it runs a pick on the other seeds)."""
    ran = {(r.trial, r.seed) for r in runs}
    return sum(all((trial, seed) in ran for seed in seeds) for trial in range(planned))


def pick_pending(runs: list[RunRecord], trial: int | None) -> list[int]:
    """The seeds the defaults ran on (finished or failed) where the picked trial has no run yet: the final seeds
    `fairbench run` still has to run it on."""
    if trial is None:
        return []
    ran = {r.seed for r in runs if r.trial == trial}
    return sorted({r.seed for r in runs if r.trial == DEFAULT_TRIAL} - ran)


def on_search_seeds(runs: list[RunRecord], seeds: list[int]) -> dict[int, list[RunRecord]]:
    """Trial -> the method's runs of that trial on the search seeds (`search_choice`'s input)."""
    by_trial: dict[int, list[RunRecord]] = {}
    for r in runs:
        if r.seed in seeds:
            by_trial.setdefault(r.trial, []).append(r)
    return by_trial


def picked_trial(runs: list[RunRecord], seeds: list[int], rule: Any) -> int | None:
    """The trial `rule` picks on the search seeds (None: every trial failed there)."""
    return search_choice(on_search_seeds(runs, seeds), rule)


def trial_runs(runs: list[RunRecord], trial: int | None) -> list[RunRecord]:
    """The finished runs of one trial, one per seed (the first in store order), by seed."""
    by_seed: dict[int, RunRecord] = {}
    for r in runs:
        if r.ok and r.trial == trial:
            by_seed.setdefault(r.seed, r)
    return [by_seed[s] for s in sorted(by_seed)]


def regimes(rule: Any, registered: Any) -> list[tuple[str, str, Any]]:
    """(name, description, rule) of each regime a search reports: the defaults, val_acc, val_wga, the table's rule
    if it is another, and the test oracle; `registered(name)` finds an installed rule."""
    own = [rule] if rule.name not in (*REGIME_RULES, ORACLE) else []
    rules = [registered(name) for name in REGIME_RULES] + own
    named = [(DEFAULT, "trial 0: the method's default hyperparameters", None)]
    return named + [(r.name, r.description, r) for r in rules] + [(ORACLE, TestOracle.description, TestOracle())]
