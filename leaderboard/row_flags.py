"""A leaderboard row's warnings: its runs' flags (`flags.run_flags`) gathered over seeds, and the row's own (fewer
than 3 seeds, runs on more than one machine, sealed and in-process runs mixed, a zero-width interval over seeds);
where its runs ran; a table's hardware and banner."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING, Iterable, Mapping

from fairfacebench.flags import Flag
from fairfacebench.leaderboard.model import MIN_SEEDS, SUMMARY_METRICS, HardwareRuns, MetricSummary, Row, SearchProgress
from fairfacebench.provenance import hardware_of
from fairfacebench.spec import canonical_json

if TYPE_CHECKING:
    from fairfacebench.leaderboard.evidence import StoredRuns
    from fairfacebench.record import RunRecord

FLAG_ORDER = (
    "degenerate",
    "at-chance",
    "near-chance",
    "few-seeds",
    "missing-seeds",
    "searching",
    "mixed-hparams",
    "smoke-budget",
    "demonstration-budget",
    "mixed-hardware",
    "cross-hardware",
    "mixed-isolation",
    "tiny-groups",
    "uninformative-interval",
)
ZERO_WIDTH = 1e-9  # seeds equal up to floating-point rounding
SMOKE_BANNER = "Budget smoke: a check that everything runs, not a comparison. Do not read these numbers as results."


def row_flags(
    runs: list[RunRecord],
    stored: StoredRuns,
    summaries: dict[str, MetricSummary],
    search: SearchProgress | None = None,
    attempted: Iterable[int] = (),
    every_run: Iterable[RunRecord] = (),
) -> list[Flag]:
    """The warnings of a row whose selected runs are `runs` (one per seed), in FLAG_ORDER. With one seed the row
    shows that run's interval, so the run's uninformative-interval flag is the row's; with several, the row's own.
    `search`: how far the method's search has come, in a store with one; `attempted`: the seeds the method has runs
    on, finished or failed; `every_run`: all of them (its newest version)."""
    per_run = [(r.seed, f) for r in runs for f in stored.flags(r)]
    if len(runs) > 1:
        per_run = [(seed, f) for seed, f in per_run if f.code != "uninformative-interval"]
    found = gathered(per_run, len(runs)) + [few_seeds(len(runs)), missing_seeds(runs, attempted), searching(search)]
    found.append(mixed_hparams(every_run))
    found += [mixed_hardware(runs), mixed_isolation(runs)]
    found += [zero_width(summaries)] if len(runs) > 1 else []
    return sorted([f for f in found if f is not None], key=lambda f: FLAG_ORDER.index(f.code))


def gathered(per_run: list[tuple[int, Flag]], n_runs: int) -> list[Flag]:
    """One flag per code, in first-seen order, its detail merged over the seeds that carry it."""
    by_code: dict[str, dict[int, str]] = defaultdict(dict)
    for seed, flag in per_run:
        by_code[flag.code][seed] = flag.detail
    return [Flag(code, merged(details, n_runs)) for code, details in by_code.items()]


def merged(details: dict[int, str], n_runs: int) -> str:
    """One detail when the seeds agree (naming them unless every run says it), else each seed's."""
    texts = set(details.values())
    if len(texts) > 1:
        return "; ".join(f"seed {s}: {d}" for s, d in sorted(details.items()))
    text = texts.pop()
    return text if len(details) == n_runs else f"{seeds_named(details)}: {text}"


def seed_list(seeds) -> str:
    return ", ".join(str(s) for s in sorted(seeds))


def seeds_named(seeds) -> str:
    """'seed 0' or 'seeds 1, 3'."""
    return f"seed{'s' if len(seeds) > 1 else ''} {seed_list(seeds)}"


def few_seeds(n: int) -> Flag | None:
    if not 0 < n < MIN_SEEDS:
        return None
    return Flag(
        "few-seeds",
        f"{n} seed{'s' if n > 1 else ''}: across-seed intervals and paired comparisons are not meaningful below "
        f"{MIN_SEEDS} seeds",
    )


def missing_seeds(runs: list[RunRecord], attempted: Iterable[int]) -> Flag | None:
    """'missing-seeds' when the method ran on seeds where the row has no finished run (its selected trial, or every
    trial, failed there): the row's means and its paired differences stand on the other seeds."""
    missing = set(attempted) - {r.seed for r in runs}
    if not runs or not missing:
        return None
    return Flag(
        "missing-seeds",
        f"no finished run on {seeds_named(missing)}, where the method ran (its run failed: the row's failed runs "
        "say why): its means and paired differences stand on the other seeds",
    )


def searching(search: SearchProgress | None) -> Flag | None:
    """'searching' while the row stands for the defaults because the search, or its pick's final seeds, has runs
    left."""
    if search is None or not search.pending:
        return None
    if not search.complete:
        return Flag(
            "searching",
            f"search {search.trials} of {search.planned} trials (the defaults included) on the search "
            f"{seeds_named(search.search_seeds)}: the row shows the defaults (trial 0), and no regime picks a trial "
            "until every trial has run",
        )
    return Flag(
        "searching",
        f"the rule picks trial {search.pick} on the search {seeds_named(search.search_seeds)}, not yet run on "
        f"{seeds_named(search.pending_seeds)}: the row shows the defaults (trial 0) until it has run on every seed",
    )


def mixed_hparams(runs: Iterable[RunRecord]) -> Flag | None:
    """'mixed-hparams' when runs of one trial (same method version) carry different hyperparameters: the method's
    defaults or search space changed without a new `method_version`, so the old runs stay in the store under the same
    trial number; a pick, and a row over seeds, could mix two configurations."""
    sets: dict[int, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for r in runs:
        sets[r.trial][canonical_json(r.spec.hparams)].add(r.seed)
    mixed = {trial: by_set for trial, by_set in sorted(sets.items()) if len(by_set) > 1}
    if not mixed:
        return None
    described = "; ".join(
        f"trial {trial}: {len(by_set)} sets, on {' and on '.join(seeds_named(s) for s in by_set.values())}"
        for trial, by_set in mixed.items()
    )
    return Flag(
        "mixed-hparams",
        f"runs of one trial with different hyperparameters ({described}): its defaults or search space changed "
        "without a new method_version, so the store holds both under one trial number and the row or a pick may mix "
        "them; bump the plugin's method_version, or remove the stale runs",
    )


def machines(runs: list[RunRecord]) -> dict[str, list[int]]:
    """Hardware -> the seeds of the runs that ran on it, in first-seen order."""
    seeds: dict[str, list[int]] = {}
    for r in runs:
        seeds.setdefault(hardware_of(r.host), []).append(r.seed)
    return seeds


def mixed_hardware(runs: list[RunRecord]) -> Flag | None:
    """'mixed-hardware' when a row's runs ran on more than one machine (or some did not record theirs)."""
    used = machines(runs)
    if len(used) < 2:
        return None
    ran = (f"{seeds_named(s)} on {hw}" for hw, s in used.items())
    return Flag("mixed-hardware", "; ".join(ran))


def cross_hardware(pairs: dict[str, tuple[Mapping[int, RunRecord], Mapping[int, RunRecord]]]) -> Flag | None:
    """'cross-hardware' when a paired difference of the row (label -> its two runs by seed) compares, on some seed,
    two runs that ran on different machines: that seed's difference holds the machines' rounding as well (the same
    run id moved erm's eod_max by 0.008 between two CPUs)."""
    found = []
    for label, (a, b) in pairs.items():
        seeds = [s for s in sorted(set(a) & set(b)) if hardware_of(a[s].host) != hardware_of(b[s].host)]
        if seeds:
            found.append(f"{label} on {seeds_named(seeds)}")
    if not found:
        return None
    return Flag("cross-hardware", f"{'; '.join(found)}: each such seed's two runs ran on different machines")


def with_flag(flags: list[Flag], flag: Flag | None) -> list[Flag]:
    """`flags` with `flag` added in FLAG_ORDER (unchanged when it is None)."""
    return flags if flag is None else sorted([*flags, flag], key=lambda f: FLAG_ORDER.index(f.code))


def isolations(runs: list[RunRecord]) -> dict[str, list[int]]:
    """Where the runs' methods ran ('sealed', 'in-process': `RunRecord.isolation_mode`) -> their seeds."""
    seeds: dict[str, list[int]] = {}
    for r in runs:
        seeds.setdefault(r.isolation_mode, []).append(r.seed)
    return seeds


def isolation(runs: list[RunRecord]) -> str:
    """A row's `isolation`: 'sealed' or 'in-process' when all its runs ran so, 'mixed' when its seeds differ."""
    found = list(isolations(runs))
    return found[0] if len(found) == 1 else "mixed"


def mixed_isolation(runs: list[RunRecord]) -> Flag | None:
    """'mixed-isolation' when some of a row's runs ran sealed and others in the harness's process (same numbers,
    but only the sealed ones do not trust the plugin)."""
    where = isolations(runs)
    if len(where) < 2:
        return None
    return Flag("mixed-isolation", "; ".join(f"{seeds_named(s)} {mode}" for mode, s in where.items()))


def zero_width(summaries: dict[str, MetricSummary]) -> Flag | None:
    """'uninformative-interval' for metrics whose interval over seeds has zero width (every seed gave one value, and
    so did every resample of the test rows when the interval is the crossed bootstrap's)."""
    flat = [
        m
        for m in SUMMARY_METRICS
        if (s := summaries.get(m)) is not None and s.interval and s.n > 1 and width(s.interval) < ZERO_WIDTH
    ]
    if not flat:
        return None
    return Flag("uninformative-interval", f"{', '.join(flat)}: zero width over seeds (every seed gave the same value)")


def width(interval: list) -> float:
    lo, hi = interval
    return math.inf if lo is None or hi is None else hi - lo


def table_hardware(rows: list[Row], runs: dict[str, list[RunRecord]]) -> list[HardwareRuns]:
    """Each machine the rows' selected runs ran on, with how many runs and which methods."""
    count: dict[str, int] = defaultdict(int)
    methods: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        for hw in row.hardware:
            count[hw] += sum(1 for r in runs.get(row.method, []) if hardware_of(r.host) == hw)
            methods[hw].append(row.method)
    return [HardwareRuns(hw, count[hw], methods[hw]) for hw in sorted(count, key=lambda h: (-count[h], h))]


def banner(budget: dict, seeds: int) -> str | None:
    """The smoke budget's banner, or the demonstration budget's (`default`, what `make bench` runs)."""
    name = budget.get("name")
    if name == "smoke":
        return SMOKE_BANNER
    if name != "default":
        return None
    size = f"{budget.get('steps')} steps of {budget.get('batch_size')} images"
    count = "one seed" if seeds == 1 else f"{seeds} seeds"
    return (
        f"Budget default: demonstration size ({size}), {count}: it shows that every method runs and what the data "
        "is built to show, not how the methods compare. Do not read these numbers as results."
    )
