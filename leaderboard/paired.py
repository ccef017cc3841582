"""The crossed bootstrap over seeds and the shared test rows (`metrics.hierarchical`) of runs' stored test
predictions: one method's mean over its seeds (`crossed_mean_of`), and paired differences between two sets of runs
over the seeds both ran, with Holm's correction over a family."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Mapping

import numpy as np

from fairfacebench.leaderboard.model import ALPHA, MIN_SEEDS, PairedDifference, defined
from fairfacebench.metrics.compare import holm
from fairfacebench.metrics.hierarchical import crossed_mean, crossed_paired_difference, seed_predictions

if TYPE_CHECKING:
    from fairfacebench.leaderboard.evidence import StoredRuns
    from fairfacebench.record import RunRecord

RESAMPLES = 1000
BOOTSTRAP = "crossed paired bootstrap"
MEAN_ONLY = "per-seed mean only (no stored test predictions)"
PAIRED_NOTE = (
    "mean [95% interval] of the per-seed differences; the interval and p-value from the crossed paired bootstrap "
    f"(seeds drawn with replacement and, independently, the test rows every seed shares, {RESAMPLES:,} resamples; "
    "each side widened for few seeds by a Satterthwaite t factor); "
    "'tied': not significant "
    f"at α = {ALPHA} after Holm's correction over the column (family: this table, this metric)"
)

BySeed = Mapping[int, "RunRecord"]


class Paired:
    """Paired differences of runs of one comparison, each pair of run sets computed once."""

    def __init__(self, stored: StoredRuns) -> None:
        self.stored = stored
        self._cache: dict[tuple, dict] = {}

    def crossed_mean(self, runs: list[RunRecord]) -> dict | None:
        """`crossed_mean_of` the runs (one per seed), computed once per set of runs: a row and the regime that
        picks the same trial share it."""
        key = ("mean", *(r.run_id for r in runs))
        if key not in self._cache:
            self._cache[key] = crossed_mean_of(runs, self.stored)
        return self._cache[key]

    def difference(self, minuend: BySeed, subtrahend: BySeed, metrics: tuple[str, ...]) -> dict[str, PairedDifference]:
        """minuend − subtrahend of each metric over the seeds both have a run of."""
        seeds = sorted(set(minuend) & set(subtrahend))
        joint = self.bootstrap(minuend, subtrahend, seeds)
        if joint is None:
            return {m: mean_only(minuend, subtrahend, seeds, m) for m in metrics}
        return {m: from_bootstrap(joint["metrics"][m], seeds) for m in metrics}

    def bootstrap(self, minuend: BySeed, subtrahend: BySeed, seeds: list[int]) -> dict | None:
        """`crossed_paired_difference` of the two run sets (None: a run without stored predictions)."""
        key = tuple((s, minuend[s].run_id, subtrahend[s].run_id) for s in seeds)
        if key not in self._cache:
            self._cache[key] = self.crossed(minuend, subtrahend, seeds)
        return self._cache[key]

    def crossed(self, minuend: BySeed, subtrahend: BySeed, seeds: list[int]) -> dict | None:
        """The crossed bootstrap of the two run sets' stored test predictions over the shared seeds, or None when a
        run left no predictions."""
        stacked = stacked_predictions([minuend[s] for s in seeds] + [subtrahend[s] for s in seeds], self.stored)
        if stacked is None:
            return None
        y, g, predictions, n_groups, n_classes = stacked
        half = len(seeds)
        return crossed_paired_difference(
            y, g, predictions[:half], predictions[half:], n_groups, n_classes, RESAMPLES, seed=0
        )


def crossed_mean_of(runs: list[RunRecord], stored: StoredRuns) -> dict | None:
    """`crossed_mean` of one method's runs (one per seed) from their stored test predictions, or None when a run
    left no predictions."""
    stacked = stacked_predictions(runs, stored)
    if stacked is None:
        return None
    y, g, predictions, n_groups, n_classes = stacked
    return crossed_mean(y, g, predictions, n_groups, n_classes, RESAMPLES, seed=0)


def stacked_predictions(runs: list[RunRecord], stored: StoredRuns) -> tuple | None:
    """(y, groups, predictions (runs, n), n_groups, n_classes) of runs scored on one shared test set, or None when
    there are no runs, no group names or a run without stored predictions; runs on different test rows are refused
    with their ids."""
    arrays = [stored.predictions(r) for r in runs]
    groups = runs[0].task_info.group_names if runs and runs[0].task_info else None
    if not runs or not groups or any(a is None for a in arrays):
        return None
    n_classes = arrays[0]["test_scores"].shape[1]
    try:
        y, g, predictions = seed_predictions(arrays, n_classes)
    except ValueError as exc:
        names = ", ".join(r.run_id for r in runs)
        raise ValueError(f"runs {names} (seeds {sorted({r.seed for r in runs})}): {exc}") from None
    return y, g, predictions, len(groups), n_classes


def from_bootstrap(result: dict, seeds: list[int]) -> PairedDifference:
    """One metric of `crossed_paired_difference` as a PairedDifference (Holm filled in later)."""
    return PairedDifference(
        mean=result["difference"],
        n=len(seeds),
        ci95=result["interval"],
        seeds=seeds,
        p_value=result["p_value"],
        p_holm=None,
        tied=None,
        method=BOOTSTRAP,
    )


def mean_only(minuend: BySeed, subtrahend: BySeed, seeds: list[int], metric: str) -> PairedDifference:
    """The mean of the per-seed differences of the recorded test metric, with no interval or p-value."""
    values = [(minuend[s].test_metric(metric), subtrahend[s].test_metric(metric)) for s in seeds]
    differences = [a - b for a, b in values if defined(a) and defined(b)]
    mean = float(np.mean(differences)) if differences else None
    return PairedDifference(mean, len(differences), None, seeds, None, None, None, MEAN_ONLY)


def in_holm_family(difference: PairedDifference) -> bool:
    """Whether a difference is judged: it has a p-value and spans MIN_SEEDS or more seeds (below, training
    randomness is unmeasured).  Only these enter a Holm family, so the others do not make its correction more
    conservative."""
    return difference.p_value is not None and difference.n >= MIN_SEEDS


def holm_family(family: dict[str, PairedDifference]) -> dict[str, PairedDifference]:
    """The family's differences with Holm-adjusted p-values and `tied` (not rejected at ALPHA); the others
    (`in_holm_family`: untested, or over fewer than MIN_SEEDS seeds) as they are and outside the family."""
    tested = {k: d.p_value for k, d in family.items() if in_holm_family(d)}
    if not tested:
        return family
    corrected = holm(tested, ALPHA)
    return {
        k: replace(d, p_holm=corrected["adjusted"][k], tied=not corrected["reject"][k]) if k in tested else d
        for k, d in family.items()
    }


def holm_columns(
    table: dict[str, dict[str, PairedDifference]], metrics: tuple[str, ...]
) -> dict[str, dict[str, PairedDifference]]:
    """A paired table (label -> metric -> difference) with Holm's correction applied per metric column."""
    columns = {m: holm_family({label: diffs[m] for label, diffs in table.items()}) for m in metrics}
    return {label: {m: columns[m][label] for m in metrics} for label in table}
