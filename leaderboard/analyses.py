"""A table's analyses beyond its columns: accuracy at equal fairness, calibration per group, gaps over intersectional
groups, and in-domain vs transfer.

`fairfacebench.analyses` computes each selected run's numbers from its stored predictions (and labels read back);
here they become a row's fields (over seeds, as `summary.summarise` does for the columns) and a table's cells,
orders and notes. An analysis that could not be made leaves its field None and says why in the table's notes.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from fairfacebench.flags import transfer_flags
from fairfacebench.leaderboard.model import (
    CALIBRATION_METRICS,
    INTERSECTIONAL_METRICS,
    TRANSFER_METRICS,
    Calibration,
    EqualFairnessOrder,
    EqualFairnessPoint,
    GroupCalibration,
    IntersectionalCells,
    MetricSummary,
    Row,
    TransferSummary,
)
from fairfacebench.leaderboard.summary import mean_of, summarise
from fairfacebench.metrics.calibration import calibration_by_group
from fairfacebench.metrics.compare import kendall_tau, order_by_mean
from fairfacebench.metrics.unprocessing import EQUAL_FAIRNESS_NOTE
from fairfacebench.readback import NotReadBack

if TYPE_CHECKING:
    from fairfacebench.leaderboard.evidence import StoredRuns
    from fairfacebench.record import RunRecord, SharedGroupsScore

CALIBRATION_NOTE = (
    "calibration: top-label ECE over 15 equal-width confidence bins (Guo et al. 2017) and the Brier score, per "
    "sensitive group of each selected run's stored test scores, over seeds; per-group ECE is biased upward in small "
    "groups; the reliability diagrams pool the selected runs' test rows"
)
ANALYSES = {
    "calibration": "calibration per group",
    "equal_fairness": "accuracy at equal fairness",
    "intersectional": "intersectional gaps",
}


def attempt(analysis: Callable[[RunRecord, Any], Any], record: RunRecord, stored: StoredRuns) -> Any | None:
    """An analysis of one run, or None when it cannot be made (`table_analyses` says why)."""
    try:
        return analysis(record, stored.predictions(record))
    except NotReadBack:
        return None


# ------------------------------------------------------------------ a row's fields


def row_analyses(ok: list[RunRecord], stored: StoredRuns) -> dict[str, Any]:
    """A row's calibration, equal_fairness, intersectional and transfer fields from its selected runs."""
    return dict(
        calibration=calibration(ok, stored),
        equal_fairness=equal_fairness(ok, stored),
        intersectional=intersectional(ok, stored),
        transfer=transfer(ok),
    )


def calibration(ok: list[RunRecord], stored: StoredRuns) -> Calibration | None:
    """ECE and Brier overall, worst-group and gap over seeds; per group the means and the pooled reliability diagram."""
    done = [(r, c) for r in ok if (c := attempt(stored.analyses.calibration, r, stored)) is not None]
    if not done:
        return None
    values = {
        m: [c["overall"][m] if m in ("ece", "brier") else c["summary"][m] for _, c in done] for m in CALIBRATION_METRICS
    }
    arrays = [stored.predictions(r) for r, _ in done]
    names = [g["group"] for g in done[0][1]["per_group"]]
    pooled = calibration_by_group(
        np.concatenate([a["test_scores"] for a in arrays]),
        np.concatenate([a["test_y"] for a in arrays]),
        np.concatenate([a["test_a"] for a in arrays]),
        names,
    )
    groups = [
        GroupCalibration(
            group=name,
            n=int(np.mean([c["per_group"][g]["n"] for _, c in done])),
            ece=mean_of([c["per_group"][g]["ece"] for _, c in done]),
            brier=mean_of([c["per_group"][g]["brier"] for _, c in done]),
            reliability=pooled["per_group"][g]["reliability"],
        )
        for g, name in enumerate(names)
    ]
    return Calibration(**{m: summarise(values[m], []) for m in CALIBRATION_METRICS}, per_group=groups)


def equal_fairness(ok: list[RunRecord], stored: StoredRuns) -> list[EqualFairnessPoint] | None:
    """Per tolerance: test accuracy and achieved test eod_max of the post-processed runs, over seeds."""
    done = [e for r in ok if (e := attempt(stored.analyses.equal_fairness, r, stored)) is not None]
    if not done:
        return None
    return [
        EqualFairnessPoint(
            tolerance=point["tolerance"],
            acc=summarise([e[i]["test_acc"] for e in done], []),
            eod_max=summarise([e[i]["test_eod_max"] for e in done], []),
        )
        for i, point in enumerate(done[0])
    ]


def intersectional(ok: list[RunRecord], stored: StoredRuns) -> dict[str, MetricSummary] | None:
    """The gaps over the table's intersectional cells, over seeds (one seed: its bootstrap interval)."""
    done = [x for r in ok if (x := attempt(stored.analyses.intersectional, r, stored)) is not None]
    if not done:
        return None
    return {
        m: summarise([x["metrics"][m] for x in done], [x["intervals"].get(m) for x in done])
        for m in INTERSECTIONAL_METRICS
    }


def transfer(ok: list[RunRecord]) -> list[TransferSummary] | None:
    """Per other dataset the selected runs were evaluated on: in-domain and transfer metrics over those seeds, and
    the runs' flags of that evaluation (an approximate reading), each distinct one once."""
    datasets = list(dict.fromkeys(d for r in ok for d in (r.transfer or {})))
    summaries = []
    for dataset in datasets:
        evaluated = [r for r in ok if dataset in (r.transfer or {})]
        results = [(r.seed, r.transfer[dataset]) for r in evaluated]
        first = results[0][1]
        summaries.append(
            TransferSummary(
                dataset=dataset,
                group_names=list(first.group_names),
                seeds=[seed for seed, _ in results],
                n=first.transfer.n,
                left_out=first.transfer.left_out,
                in_domain=shared_summaries([t.in_domain for _, t in results]),
                transfer=shared_summaries([t.transfer for _, t in results]),
                flags=list(dict.fromkeys(f for r in evaluated for f in transfer_flags(r, dataset))),
            )
        )
    return summaries or None


def shared_summaries(scores: list[SharedGroupsScore]) -> dict[str, MetricSummary]:
    def interval(score: SharedGroupsScore, metric: str) -> list | None:
        return ((score.intervals or {}).get("intervals") or {}).get(metric)

    return {
        m: summarise([s.metrics.get(m) for s in scores], [interval(s, m) for s in scores]) for m in TRANSFER_METRICS
    }


# ------------------------------------------------------------------ a table's fields


def table_analyses(rows: list[Row], selected: dict[str, list[RunRecord]], stored: StoredRuns) -> dict[str, Any]:
    """A table's intersectional cells, equal-fairness orders and notes (what each analysis uses; why one is missing)."""
    return dict(
        intersectional=cells(selected, stored),
        equal_fairness_orders=orders(rows),
        analysis_notes=notes(rows, selected, stored),
    )


def cells(selected: dict[str, list[RunRecord]], stored: StoredRuns) -> IntersectionalCells | None:
    """The intersectional cells of the table's test split (every run of a comparison shares it)."""
    intersect = stored.analyses.access.intersect if stored.analyses.access else None
    for record in (r for runs in selected.values() for r in runs):
        try:
            found = stored.analyses.cells(record, stored.predictions(record))
        except NotReadBack:
            continue
        return IntersectionalCells(
            dataset=intersect.dataset,
            attributes=list(intersect.attributes),
            min_cell=found.min_cell_size,
            rule=found.rule(),
            groups=list(zip(found.names, found.rows)),
            merged=found.merged,
            left_out=found.left_out,
        )
    return None


def orders(rows: list[Row]) -> list[EqualFairnessOrder]:
    """Per tolerance: the rows with a number there, by mean accuracy at it and by raw accuracy, and Kendall's τ."""
    with_points = [r for r in rows if r.ok and r.equal_fairness]
    if not with_points:
        return []
    out = []
    for i, point in enumerate(with_points[0].equal_fairness):
        at = order_by_mean({r.method: r.equal_fairness[i].acc.mean for r in with_points})
        raw = order_by_mean({r.method: r.acc.mean for r in with_points if r.method in at})
        at = [m for m in at if m in raw]
        out.append(EqualFairnessOrder(point.tolerance, at, raw, kendall_tau(at, raw)))
    return out


def notes(rows: list[Row], selected: dict[str, list[RunRecord]], stored: StoredRuns) -> list[str]:
    """What the analyses use, and for each that could not be made for some rows, why (naming the rows)."""
    out = []
    if any(r.calibration for r in rows):
        out.append(CALIBRATION_NOTE)
    if any(r.equal_fairness for r in rows):
        out.append(f"accuracy at equal fairness: {EQUAL_FAIRNESS_NOTE}")
    for kind, label in ANALYSES.items():
        why: dict[str, list[str]] = defaultdict(list)
        for method, runs in selected.items():
            for record in runs:
                try:
                    getattr(stored.analyses, kind)(record, stored.predictions(record))
                except NotReadBack as exc:
                    if method not in why[str(exc)]:
                        why[str(exc)].append(method)
        finished = [m for m, runs in selected.items() if runs]
        for reason, methods in why.items():
            whose = "every row" if methods == finished else ", ".join(methods)
            out.append(f"{label} not computed ({whose}): {reason}")
    return out
