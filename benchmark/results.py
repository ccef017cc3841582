"""The result store as a pandas DataFrame: one row per run, its settings, metrics and per-group numbers as columns.

`load_runs(DIR)` reads every finished `record.json` under DIR (the --out of
`fairbench run`); the columns are documented in README.md ("Results in
pandas").  pandas is imported when it is called, so `import fairfacebench` stays light.
Each run's tier, flags and test intervals come from `flags` (the leaderboard gathers the same flags per row).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from fairfacebench.flags import current_intervals, information_tier, run_flags
from fairfacebench.method_code import installed_fingerprint
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
    "tier",
    "flags",
    "flag_details",
)
GROUP_FIELDS_SKIPPED = ("group", "note")


def pool_name(pool: PoolSpec) -> str:
    """'none', 'dataset:synthfaces', 'folder:NAME', ..."""
    return pool.kind if pool.kind == "none" else f"{pool.kind}:{pool.source or ''}"


def run_row(record: RunRecord, predictions: Mapping | None = None) -> dict[str, Any]:
    """One run record as a flat row (failed runs have settings and their error, no metrics); given the run's stored
    test predictions, intervals of an older construction are recomputed (`current_intervals`), else as recorded."""
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
    }


def metric_columns(record: RunRecord) -> dict[str, Any]:
    """'val.acc', 'test.eod_max', ...: every metric of every split."""
    return {f"{split}.{k}": v for split, values in (record.metrics or {}).items() for k, v in values.items()}


def flag_columns(record: RunRecord, intervals: dict[str, Any] | None) -> dict[str, Any]:
    """'tier', 'flags' (codes, comma-separated) and 'flag_details' ('code: detail', separated by ' | ')."""
    flags = run_flags(record, intervals, installed_fingerprint(record)) if record.ok else []
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
    """'transfer.DATASET.acc' and 'transfer.DATASET.in_domain.acc', ...: the metrics of each --eval-on evaluation."""
    columns: dict[str, Any] = {}
    for dataset, result in (record.transfer or {}).items():
        columns.update({f"transfer.{dataset}.{k}": v for k, v in result.transfer.metrics.items()})
        columns.update({f"transfer.{dataset}.in_domain.{k}": v for k, v in result.in_domain.metrics.items()})
    return columns


def fit_columns(record: RunRecord) -> dict[str, Any]:
    """'fit.steps', 'fit.forward_samples', ...: what the budget meter reported."""
    report = record.budget_report or {}
    return {f"fit.{k}": report[k] for k in ("steps", "forward_samples", "wall_time_s", "eval_time_s") if k in report}


def read_records(store_dir: Path | str) -> list[RunRecord]:
    """Every finished record of a store, by run id (partial directories ignored, damaged records skipped, warned)."""
    return list(ResultStore(store_dir, create=False).records())


def load_runs(store_dir: Path | str) -> Any:
    """A pandas DataFrame with one row per run of the store at `store_dir` (see README "Results in pandas")."""
    import pandas as pd

    store = ResultStore(store_dir, create=False)
    rows = [run_row(r, stored_predictions(store, r)) for r in store.records()]
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
