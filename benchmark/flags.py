"""What one finished run warns of, which labels it needed, and its test intervals in the current construction.

Defined once, for `load_runs` (one row per run) and for the leaderboard, which gathers the flags of a row's runs
(docs/METRICS.md, "Flags" and "Information tiers"): predictions that are degenerate, at or near chance, a budget that
is not a result (smoke, the demonstration size), tiny groups, uninformative intervals, code other than installed; and
of each of its transfer evaluations, a reading of an attribute that only approximates its shared concept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from fairfacebench.method_code import made_with_other_code
from fairfacebench.metrics.bootstrap import MIN_GROUP_ROWS, intervals_from_counts
from fairfacebench.metrics.fairness import confusion_counts

if TYPE_CHECKING:
    from fairfacebench.record import RunRecord

# Information tiers, fewest labels first (docs/METRICS.md, "Information tiers").
TIERS = ("train labels", "+ validation labels", "+ sensitive attribute at inference")
TIER_NOT_RECORDED = "not recorded"
# Test accuracy below the majority-class rate plus this many binomial standard errors: at chance; near chance.
AT_CHANCE_SE = 2
NEAR_CHANCE_SE = 4
# Budgets whose numbers are not results: the smoke check and the demonstration size of `make bench`.
NOT_A_RESULT_BUDGETS = {
    "smoke": ("smoke-budget", "a check that everything runs, not a comparison"),
    "default": (
        "demonstration-budget",
        "demonstration size, where several methods have not learned the task yet; not a result",
    ),
}
# Resamples of a recomputed interval when the run itself asked for none (`--bootstrap 0`).
BOOTSTRAP_RESAMPLES = 1000


@dataclass(frozen=True)
class Flag:
    """A warning a run (or a leaderboard row) carries: a short code and what it means for this run."""

    code: str
    detail: str


def current_intervals(record: RunRecord, predictions: Mapping | None) -> dict[str, Any] | None:
    """The run's test intervals in the current construction (`metrics.bootstrap.intervals_from_counts`: BCa and
    projection intervals that hold their estimate, with the `uninformative` flags): as recorded when the record has
    them, else recomputed from its stored predictions (same resamples and seed as the run), else None (nothing to
    recompute them from)."""
    stored = record.test_intervals
    if not record.ok or (stored is not None and "uninformative" in stored):
        return stored if record.ok else None
    groups = record.task_info.group_names if record.task_info else None
    if predictions is None or not groups or "test_a" not in predictions:
        return None
    n_classes = predictions["test_scores"].shape[1]
    y_hat = predictions["test_scores"].argmax(1)
    counts = confusion_counts(predictions["test_y"], y_hat, predictions["test_a"], len(groups), n_classes)
    resamples = record.spec.bootstrap or BOOTSTRAP_RESAMPLES
    return intervals_from_counts(counts, n_resamples=resamples, seed=record.spec.seed, group_names=groups)


def information_tier(supervision: dict[str, Any] | None) -> str:
    """Which labels a method needs, from its record's `supervision`: train labels only, also validation labels
    (target or sensitive), or also the sensitive attribute at inference (TIERS)."""
    if not supervision:
        return TIER_NOT_RECORDED
    if supervision.get("sensitive_at_inference"):
        return TIERS[2]
    splits = {s for key in ("target", "sensitive") for s in (supervision.get(key) or "").split("+")}
    return TIERS[1] if "val" in splits else TIERS[0]


def run_flags(
    record: RunRecord, intervals: dict[str, Any] | None, installed: tuple[str, ...] | None = None
) -> list[Flag]:
    """Every warning one finished run carries, in a fixed order (docs/METRICS.md, "Flags"); `installed` holds the
    fingerprint of the method's code installed here and those it declares to compute the same
    (`method_code.results_code`), None when unknown."""
    groups = record.test_groups
    found = [Flag("degenerate", reason) for reason in degenerate(record)]
    found += [chance_flag(record.test_metric("acc"), groups), budget_flag(record.spec.budget.name)]
    found += [tiny_groups_flag(groups), uninformative_flag(intervals), code_flag(record, installed)]
    return [f for f in found if f is not None]


def code_flag(record: RunRecord, installed: tuple[str, ...] | None) -> Flag | None:
    """'other-code' when the run was made with other code of its method than is installed here now (the record's
    fingerprint of the method's modules is neither the installed one, `installed[0]`, nor one the method declares
    to compute the same; records from before fingerprints, or a method not installed, are not judged)."""
    if not made_with_other_code(record, installed):
        return None
    made = record.method_code
    return Flag(
        "other-code",
        f"made with code {made.fingerprint} ({made.distribution or '?'} {made.version or ''}), installed now: "
        f"{installed[0]}; `fairbench run --rerun-changed` computes it again",
    )


def degenerate(record: RunRecord) -> list[str]:
    """Why a run's test predictions are degenerate: one class for a whole group, or for everyone (a method that
    has not learned the task looks "fair" by its small gaps; it is flagged and kept off the Pareto front)."""
    rates = [(g["group"], g.get("selection_rate")) for g in record.test_groups if g.get("selection_rate") is not None]
    constant = [name for name, rate in rates if rate in (0.0, 1.0)]
    if rates and len(constant) == len(rates) and len({rate for _, rate in rates}) == 1:
        return ["one class for everyone"]
    return [f"one class for all of group {name}" for name in constant]


def majority_rate(groups: list[dict]) -> tuple[float, int] | None:
    """The majority-class rate of a binary task's test rows and their number (None when the groups do not say)."""
    counts = [(g.get("n"), g.get("positives")) for g in groups]
    if not counts or any(n is None or p is None for n, p in counts):
        return None
    n = sum(c[0] for c in counts)
    positives = sum(c[1] for c in counts)
    return (max(positives, n - positives) / n, n) if n else None


def chance_flag(acc: float | None, groups: list[dict]) -> Flag | None:
    """'at-chance' when test accuracy is below the majority-class rate plus AT_CHANCE_SE binomial standard errors
    (n test rows), 'near-chance' below NEAR_CHANCE_SE of them, else None."""
    base = majority_rate(groups)
    if acc is None or base is None:
        return None
    majority, n = base
    se = math.sqrt(majority * (1 - majority) / n)
    for code, k in (("at-chance", AT_CHANCE_SE), ("near-chance", NEAR_CHANCE_SE)):
        if acc < majority + k * se:
            threshold = f"majority class {majority:.3f} + {k} standard errors of {n} test rows"
            return Flag(code, f"test accuracy {acc:.3f} below {majority + k * se:.3f} ({threshold})")
    return None


def budget_flag(budget: str) -> Flag | None:
    """The smoke budget and the demonstration budget (`default`, what `make bench` runs) are not results."""
    if budget not in NOT_A_RESULT_BUDGETS:
        return None
    code, detail = NOT_A_RESULT_BUDGETS[budget]
    return Flag(code, f"budget {budget}: {detail}")


def tiny_groups_flag(groups: list[dict]) -> Flag | None:
    """'tiny-groups' when a sensitive group has fewer than MIN_GROUP_ROWS (10) test rows."""
    tiny = [f"{g['group']} ({g['n']} rows)" for g in groups if g.get("n") is not None and g["n"] < MIN_GROUP_ROWS]
    return Flag("tiny-groups", f"fewer than {MIN_GROUP_ROWS} test rows in {', '.join(tiny)}") if tiny else None


def uninformative_flag(intervals: dict[str, Any] | None) -> Flag | None:
    """'uninformative-interval' naming each metric whose test interval is flagged uninformative, and why."""
    reasons = (intervals or {}).get("uninformative") or {}
    if not reasons:
        return None
    return Flag("uninformative-interval", "; ".join(f"{metric}: {why}" for metric, why in reasons.items()))


def transfer_flags(record: RunRecord, dataset: str) -> list[Flag]:
    """What the run's evaluation on `dataset` (`--eval-on`) warns of: 'approximate-reading' when an attribute it
    reads, on either side, only approximates its shared concept (the dataset plugin's `data.ConceptMap.approximate`,
    e.g. CelebA's Young as under 40)."""
    notes = record.transfer[dataset].approximations(record.spec.dataset)
    return [Flag("approximate-reading", "; ".join(notes))] if notes else []
