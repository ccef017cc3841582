"""The result store as a pandas DataFrame: one row per run, its settings, metrics and per-group numbers as columns.

`load_runs(DIR)` reads every finished `record.json` under DIR (the --out of
`fairbench run`); the columns are documented in README.md ("Results in
pandas").  pandas is imported when it is called, so `import fairfacebench` stays light.
Each run's tier, flags and test intervals come from `flags` (the leaderboard gathers the same flags per row); its
calibration per group from its stored predictions, and with a `readback.DataAccess` (`leaderboard --data-root`,
`--intersect`) its accuracy at equal fairness and intersectional gaps (`analyses`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from fairfacebench.analyses import StoredAnalyses
from fairfacebench.flags import current_intervals, information_tier, run_flags, transfer_flags
from fairfacebench.method_code import installed_fingerprints
from fairfacebench.readback import DataAccess, NotReadBack
from fairfacebench.record import RunRecord
from fairfacebench.spec import PoolSpec
from fairfacebench.store import PREDICTIONS, ResultStore

SETTINGS = (
    "run_id",
    "comparison_id",
    "status",
    "error",
    "dataset",
    "task",
    "method",
    "method_version",
    "trial",
    "seed",
    "budget",
    "steps",
    "batch_size",
    "resolution",
    "backbone",
    "weights",
    "mix",
    "vlm",
    "pool",
    "data_fingerprint",
    "labels_used",
    "variant",
    "wall_time_s",
    "git_commit",
    "isolation",
    "tier",
    "flags",
    "flag_details",
)
GROUP_FIELDS_SKIPPED = ("group", "note")


def pool_name(pool: PoolSpec) -> str:
    """'none', 'dataset:synthfaces', 'folder:NAME', ..."""
    return pool.kind if pool.kind == "none" else f"{pool.kind}:{pool.source or ''}"


def run_row(
    record: RunRecord, predictions: Mapping | None = None, analyses: StoredAnalyses | None = None
) -> dict[str, Any]:
    """One run record as a flat row (failed runs have settings and their error, no metrics); given the run's stored
    test predictions, intervals of an older construction are recomputed (`current_intervals`), else as recorded;
    given `analyses` too, the analyses of those predictions (`analysis_columns`)."""
    intervals = record.test_intervals if predictions is None else current_intervals(record, predictions)
    return {
        **settings(record),
        **flag_columns(record, intervals),
        **{f"hp.{k}": v for k, v in sorted(record.spec.hparams.items())},
        **metric_columns(record),
        **interval_columns(intervals),
        **group_columns(record),
        **transfer_columns(record),
        **fit_columns(record),
        **(analysis_columns(record, predictions, analyses) if analyses is not None and record.ok else {}),
    }


def settings(record: RunRecord) -> dict[str, Any]:
    """The SETTINGS columns of a run."""
    spec = record.spec
    return {
        "run_id": record.run_id,
        "comparison_id": record.comparison_id,
        "status": record.status,
        "error": record.error,
        **{k: getattr(spec, k) for k in ("dataset", "task", "method", "method_version", "trial", "seed")},
        "budget": spec.budget.name,
        "steps": spec.budget.steps,
        "batch_size": spec.budget.batch_size,
        **{k: getattr(spec, k) for k in ("resolution", "backbone", "weights")},
        "mix": spec.augment.mix,
        "vlm": spec.vlm,
        "pool": pool_name(spec.pool),
        "data_fingerprint": spec.data_fingerprint,
        **{k: getattr(record, k) for k in ("labels_used", "variant", "wall_time_s", "git_commit")},
        "isolation": record.isolation_mode,
    }


def metric_columns(record: RunRecord) -> dict[str, Any]:
    """'val.acc', 'test.eod_max', ...: every metric of every split."""
    return {f"{split}.{k}": v for split, values in (record.metrics or {}).items() for k, v in values.items()}


def flag_columns(record: RunRecord, intervals: dict[str, Any] | None) -> dict[str, Any]:
    """'tier', 'flags' (codes, comma-separated) and 'flag_details' ('code: detail', separated by ' | ')."""
    flags = run_flags(record, intervals, installed_fingerprints(record)) if record.ok else []
    return {
        "tier": information_tier(record.supervision),
        "flags": ", ".join(f.code for f in flags),
        "flag_details": " | ".join(f"{f.code}: {f.detail}" for f in flags),
    }


def interval_columns(test_intervals: dict[str, Any] | None) -> dict[str, Any]:
    """'test.acc.lo' and 'test.acc.hi': the run's bootstrap interval of each test metric (None when undefined)."""
    intervals = (test_intervals or {}).get("intervals") or {}
    columns: dict[str, Any] = {}
    for metric, bounds in intervals.items():
        columns[f"test.{metric}.lo"], columns[f"test.{metric}.hi"] = bounds if bounds else (None, None)
    return columns


def group_columns(record: RunRecord) -> dict[str, Any]:
    """'test.group.NAME.acc', ...: the per-group numbers of every split (not the group's name or note)."""
    return {
        f"{split}.group.{group['group']}.{k}": v
        for split, table in (record.per_group or {}).items()
        for group in table.get("per_group", [])
        for k, v in group.items()
        if k not in GROUP_FIELDS_SKIPPED
    }


def transfer_columns(record: RunRecord) -> dict[str, Any]:
    """'transfer.DATASET.acc' and 'transfer.DATASET.in_domain.acc', ...: the metrics of each --eval-on evaluation,
    and its 'transfer.DATASET.flags' and 'transfer.DATASET.flag_details' (`flags.transfer_flags`)."""
    columns: dict[str, Any] = {}
    for dataset, result in (record.transfer or {}).items():
        columns.update({f"transfer.{dataset}.{k}": v for k, v in result.transfer.metrics.items()})
        columns.update({f"transfer.{dataset}.in_domain.{k}": v for k, v in result.in_domain.metrics.items()})
        flags = transfer_flags(record, dataset)
        columns[f"transfer.{dataset}.flags"] = ", ".join(f.code for f in flags)
        columns[f"transfer.{dataset}.flag_details"] = " | ".join(f"{f.code}: {f.detail}" for f in flags)
    return columns


def fit_columns(record: RunRecord) -> dict[str, Any]:
    """'fit.steps', 'fit.forward_samples', ...: what the budget meter reported."""
    report = record.budget_report or {}
    return {f"fit.{k}": report[k] for k in ("steps", "forward_samples", "wall_time_s", "eval_time_s") if k in report}


AT_EOD_USES = "the sensitive attribute at inference (group-specific thresholds, error-parity)"


def analysis_columns(record: RunRecord, predictions: Mapping | None, analyses: StoredAnalyses) -> dict[str, Any]:
    """'test.calibration.ece' (.brier, _max, _gap; '.group.NAME.ece'), 'test.at_eod_0.05.acc' and '.eod_max' (and
    'val.' the same on the fit rows, 'at_eod_uses'), 'test.intersectional.eod_max' (.lo, .hi; 'intersectional.n',
    '.left_out_rows', '.groups', '.left_out', '.rule'); 'analyses_not_made': why an analysis asked for was not made."""
    columns: dict[str, Any] = {}
    missing = []
    for name, add in (("calibration", calibration_columns), ("equal_fairness", at_eod_columns)):
        try:
            columns.update(add(getattr(analyses, name)(record, predictions)))
        except NotReadBack as exc:
            missing.append(f"{name}: {exc}")
    if analyses.access is not None and analyses.access.intersect is not None:
        try:
            columns.update(intersectional_columns(analyses, record, predictions))
        except NotReadBack as exc:
            missing.append(f"intersectional: {exc}")
    if analyses.access is not None:  # without it, only calibration is asked for
        columns["analyses_not_made"] = " | ".join(missing)
    return columns


def calibration_columns(report: dict[str, Any]) -> dict[str, Any]:
    columns = {f"test.calibration.{k}": v for k, v in {**report["overall"], **report["summary"]}.items()}
    for group in report["per_group"]:
        columns.update({f"test.calibration.group.{group['group']}.{k}": group[k] for k in ("ece", "brier")})
    return columns


def at_eod_columns(points: list[dict[str, Any]]) -> dict[str, Any]:
    columns: dict[str, Any] = {"at_eod_uses": AT_EOD_USES}
    for p in points:
        t = f"{p['tolerance']:g}"
        columns.update({f"test.at_eod_{t}.acc": p["test_acc"], f"test.at_eod_{t}.eod_max": p["test_eod_max"]})
        columns.update({f"val.at_eod_{t}.acc": p["fit_acc"], f"val.at_eod_{t}.eod_max": p["fit_eod_max"]})
    return columns


def intersectional_columns(analyses: StoredAnalyses, record: RunRecord, predictions: Mapping | None) -> dict[str, Any]:
    report = analyses.intersectional(record, predictions)
    cells = analyses.cells(record, predictions)
    columns: dict[str, Any] = {
        "intersectional.n": report["n"],
        "intersectional.left_out_rows": report["left_out_rows"],
        "intersectional.groups": "; ".join(f"{n} ({k})" for n, k in zip(cells.names, cells.rows)),
        "intersectional.left_out": "; ".join(f"{c['cell']} ({c['count']})" for c in cells.left_out),
        "intersectional.merged": "; ".join(f"{c['cell']} into {c['into']}" for c in cells.merged),
        "intersectional.rule": cells.rule(),
    }
    for metric, value in report["metrics"].items():
        lo, hi = report["intervals"].get(metric) or (None, None)
        columns.update({f"test.intersectional.{metric}": value, f"test.intersectional.{metric}.lo": lo})
        columns[f"test.intersectional.{metric}.hi"] = hi
    return columns


def read_records(store_dir: Path | str) -> list[RunRecord]:
    """Every finished record of a store, by run id (partial directories ignored, damaged records skipped, warned)."""
    return list(ResultStore(store_dir, create=False).records())


def load_runs(store_dir: Path | str, access: DataAccess | None = None) -> Any:
    """A pandas DataFrame with one row per run of the store at `store_dir` (see README "Results in pandas"); with
    `access` (data roots, intersectional attributes) also each run's accuracy at equal fairness and intersectional
    gaps."""
    import pandas as pd

    store = ResultStore(store_dir, create=False)
    analyses = StoredAnalyses(access)
    rows = [run_row(r, stored_predictions(store, r), analyses) for r in store.records()]
    columns = list(SETTINGS) + sorted({k for r in rows for k in r} - set(SETTINGS), key=_column_order)
    return pd.DataFrame(rows, columns=columns)


def _column_order(name: str) -> tuple[int, str]:
    """Hyperparameters, then validation and test metrics, then per-group columns, then fit numbers."""
    rank = 0 if name.startswith("hp.") else 3 if name.startswith("fit.") else 2 if ".group." in name else 1
    return rank, name


# ------------------------------------------------------------------ the store's predictions


def stored_predictions(store: ResultStore, record: RunRecord) -> dict[str, Any] | None:
    """The test predictions a finished run left in the store (None when it left none)."""
    if not record.ok or not (store.path(record.run_id) / PREDICTIONS).is_file():
        return None
    return store.predictions(record.run_id)
