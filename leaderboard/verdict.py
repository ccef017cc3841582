"""What a table says against erm, in words: each method sorted by its paired, Holm-corrected differences.

For every finished method with paired differences against erm (`Row.vs_erm`: the crossed bootstrap over seeds
and test rows, Holm over the table's methods per metric), the eod_max difference decides whether it is fairer,
less fair or not distinguishable, and the accuracy difference whether that came at a cost:

- fairer at no accuracy cost: eod_max significantly lower, accuracy not significantly lower;
- fairer at an accuracy cost: eod_max and accuracy both significantly lower;
- less fair: eod_max significantly higher;
- not distinguishable in eod_max: Holm does not reject (the paired interval at Holm's level holds 0);
- not tested: the runs stored no predictions, so there is a mean difference but no interval;
- not judged: fewer than 3 shared seeds, so the bootstrap sees the test rows but not training randomness (the
  `few-seeds` flag's threshold); or, in a store with a search, one of the method and erm is at its defaults while
  the other is tuned (a search or a pick's final seeds still to run: `Row.search_pending`), so the two rows were
  not tuned alike and are not compared (`tuned_alike`; a pick that is the defaults stands for either).

The same categories read each system against its own ablation (system − ablation): whether the part the ablation
removes makes the system fairer.  "Significantly" always means after Holm's correction at α = 0.05.  The table's
selection rule decides which trial each row stands for, so `leaderboard tables --rule val_wga` gives the verdict
under the other regime.
"""

from __future__ import annotations

from fairfacebench.leaderboard.model import DEFAULT_TRIAL, MIN_SEEDS, REFERENCE_METHOD, PairedDifference, Row, Verdict

FAIRER_FREE = "fairer (eod_max) at no significant accuracy cost"
FAIRER_COSTLY = "fairer (eod_max) at a significant accuracy cost"
LESS_FAIR = "less fair (eod_max)"
TIED = "not distinguishable in eod_max"
UNTESTED = "not tested (no stored predictions: means only)"
FEW_SEEDS = f"not judged (fewer than {MIN_SEEDS} shared seeds: training randomness unmeasured)"
SEARCH_PENDING = "not judged (one of it and erm is tuned, the other at its defaults: a search still running)"
SEARCH_PENDING_ABLATION = (
    "not judged (one of the system and its ablation is tuned, the other at its defaults: a search still running)"
)
ORDER = (FAIRER_FREE, FAIRER_COSTLY, TIED, LESS_FAIR, UNTESTED, FEW_SEEDS, SEARCH_PENDING, SEARCH_PENDING_ABLATION)


def significant(d: PairedDifference | None, sign: int) -> bool:
    """Holm rejects and the mean difference has the given sign."""
    return d is not None and d.tied is False and d.mean is not None and d.mean * sign > 0


def category(vs_erm: dict[str, PairedDifference]) -> str:
    eod, acc = vs_erm.get("eod_max"), vs_erm.get("acc")
    if eod is not None and eod.n < MIN_SEEDS:
        return FEW_SEEDS
    if eod is None or eod.tied is None:
        return UNTESTED
    if significant(eod, -1):
        return FAIRER_COSTLY if significant(acc, -1) else FAIRER_FREE
    return LESS_FAIR if significant(eod, +1) else TIED


def tuned_alike(a: Row, b: Row) -> bool:
    """Two rows stand for methods tuned alike: both their search's pick over every seed (or no search), or both
    their defaults (a row still searching, or whose pick is the defaults, shows trial 0 on every seed)."""
    return not (a.search_pending or b.search_pending) or (at_defaults(a) and at_defaults(b))


def at_defaults(row: Row) -> bool:
    return all(s.trial == DEFAULT_TRIAL for s in row.selected)


def verdict(rows: list[Row]) -> list[Verdict]:
    """Against erm: the methods of each category (with their tier), in ORDER; empty categories are left out."""
    erm = next((r for r in rows if r.ok and r.method == REFERENCE_METHOD), None)
    judged = [(category(r.vs_erm), f"{r.method} ({r.tier})") for r in rows if r.ok and r.vs_erm]
    unlike = [
        (SEARCH_PENDING, f"{r.method} ({r.tier})")
        for r in rows
        if erm and r.ok and r is not erm and not tuned_alike(r, erm)
    ]
    return sorted_into(judged + unlike)


def ablation_verdict(rows: list[Row]) -> list[Verdict]:
    """Each system against its own ablation (`Row.system_vs_ablation`, on the ablation's row), in the same
    categories: does the part the ablation removes make the system fairer, and at what cost."""
    systems = {r.method: r for r in rows if r.ok}
    judged = [
        (category(r.system_vs_ablation), f"{r.ablation_of} over {r.method}")
        for r in rows
        if r.ok and r.system_vs_ablation
    ]
    unlike = [
        (SEARCH_PENDING_ABLATION, f"{r.ablation_of} over {r.method}")
        for r in rows
        if r.ok and r.ablation_of in systems and not tuned_alike(r, systems[r.ablation_of])
    ]
    return sorted_into(judged + unlike)


def sorted_into(entries: list[tuple[str, str]]) -> list[Verdict]:
    found: dict[str, list[str]] = {}
    for c, label in entries:
        found.setdefault(c, []).append(label)
    return [Verdict(c, found[c]) for c in ORDER if c in found]
