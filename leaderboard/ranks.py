"""Per information tier: ranks on each compared metric (never one mean rank over metrics), the methods tied with
the best after Holm, and the accuracy-vs-eod_max Pareto front."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from fairfacebench.flags import TIER_NOT_RECORDED, TIERS
from fairfacebench.leaderboard.model import ALPHA, COMPARED_METRICS, MetricRanking, ParetoFront, Row, defined
from fairfacebench.leaderboard.paired import in_holm_family
from fairfacebench.metrics.compare import HIGHER_IS_BETTER, best_of, metric_ranks, tied_with_best

if TYPE_CHECKING:
    from fairfacebench.leaderboard.paired import Paired
    from fairfacebench.record import RunRecord

RunsOf = Callable[[Row], Mapping[int, "RunRecord"]]


def tiers_of(rows: list[Row]) -> list[str]:
    """The tiers of the finished rows, fewest labels first."""
    present = {r.tier for r in rows if r.ok}
    return [t for t in (*TIERS, TIER_NOT_RECORDED) if t in present]


def rankings(rows: list[Row], paired: Paired, runs_of: RunsOf) -> list[MetricRanking]:
    """One ranking per (tier, compared metric)."""
    return [
        ranking(tier, metric, [r for r in rows if r.ok and r.tier == tier], paired, runs_of)
        for tier in tiers_of(rows)
        for metric in COMPARED_METRICS
    ]


def ranking(tier: str, metric: str, members: list[Row], paired: Paired, runs_of: RunsOf) -> MetricRanking:
    """Ranks of one tier's methods on one metric, the best mean and who is tied with it."""
    higher = metric in HIGHER_IS_BETTER
    ranked = metric_ranks({r.method: r.per_seed[metric] for r in members}, higher)
    means = {r.method: r.summary(metric).mean for r in members}
    best = best_of(means, higher) if any(defined(v) for v in means.values()) else None
    ties = against_best(best, metric, members, paired, runs_of) if best else {"tied": [], "worse": []}
    return MetricRanking(
        tier=tier,
        metric=metric,
        seeds=ranked["seeds"],
        ranks=ranked["ranks"],
        critical_difference=ranked["critical_difference"],
        best=best,
        tied_with_best=ties["tied"],
        worse_than_best=ties["worse"],
    )


def against_best(best: str, metric: str, members: list[Row], paired: Paired, runs_of: RunsOf) -> dict:
    """`tied_with_best`: the best and the methods whose paired difference to it Holm does not reject, and those it
    rejects.  A method without stored predictions (no p-value) or sharing fewer than MIN_SEEDS seeds with the best
    (`paired.in_holm_family`) is in neither list and outside the family."""
    reference = runs_of(next(r for r in members if r.method == best))
    p_values = {}
    for r in members:
        if r.method != best:
            difference = paired.difference(runs_of(r), reference, (metric,))[metric]
            if in_holm_family(difference):
                p_values[r.method] = difference.p_value
    return tied_with_best(best, p_values, ALPHA)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (eod_max, acc) points no other point dominates, sorted by eod_max.

    q dominates p when q has eod_max <= p's and acc >= p's, one of them
    strictly: lower unfairness at no loss of accuracy, or the converse.
    """
    front = []
    for i, (eod, acc) in enumerate(points):
        dominated = any(e <= eod and a >= acc and (e < eod or a > acc) for j, (e, a) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def pareto_fronts(rows: list[Row]) -> list[ParetoFront]:
    """The front of each tier over its finished rows with defined means, degenerate and at-chance rows left out."""
    fronts = []
    for tier in tiers_of(rows):
        eligible = [
            r
            for r in rows
            if r.ok and r.tier == tier and not r.degenerate and defined(r.acc.mean) and defined(r.eod_max.mean)
        ]
        front = pareto_front([(r.eod_max.mean, r.acc.mean) for r in eligible])
        fronts.append(ParetoFront(tier, [eligible[i].method for i in front]))
    return fronts
