"""Run records for tests of the store, the leaderboard and the exports: typed `RunRecord`s with every field the
store checks, built from the few numbers a test cares about."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from fairfacebench.budget import Budget
from fairfacebench.metrics.fairness import compute_metrics
from fairfacebench.plain import nan_to_none
from fairfacebench.record import MethodInfo, RunRecord, TaskInfo
from fairfacebench.spec import RunSpec

TRAIN_ONLY = {"target": "train", "sensitive": "", "sensitive_at_inference": False}


def metrics(acc: float, wga: float = 0.5, eod: float = 0.1) -> dict[str, float]:
    """A full set of summary metrics around an accuracy, a worst-group accuracy and an eod_max."""
    return {
        "acc": acc,
        "wga": wga,
        "eod_max": eod,
        "eod_mean": eod / 2,
        "dp_diff": 0.1,
        "bal_acc": acc,
        "eopp_diff": eod,
        "group_acc_std": 0.01,
    }


def fake_spec(method: str = "m", seed: int = 0, trial: int = 0, **fields: Any) -> RunSpec:
    return RunSpec(
        dataset=fields.pop("dataset", "d"),
        task=fields.pop("task", "t"),
        method=method,
        hparams=fields.pop("hparams", {}),
        seed=seed,
        budget=fields.pop("budget", Budget("b", steps=5, batch_size=10)),
        resolution=fields.pop("resolution", 32),
        trial=trial,
        **fields,
    )


def fake_record(
    method: str = "m",
    seed: int = 0,
    trial: int = 0,
    *,
    spec: RunSpec | None = None,
    run_id: str | None = None,
    val: dict[str, float] | None = None,
    test: dict[str, float] | None = None,
    groups: list[dict[str, Any]] | None = None,
    error: str | None = None,
    labels_used: str = "y:train",
    description: str = "",
    citation: str = "",
    requires: str = "-",
    ablation_of: str | None = None,
    budget_report: dict[str, Any] | None = None,
    group_names: list[str] | None = None,
    supervision: dict[str, Any] | None = None,
    host: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    **spec_fields: Any,
) -> RunRecord:
    """An ok record (or a failed one when `error` is given) of `method` at `seed` and `trial`."""
    spec = spec or fake_spec(method, seed, trial, **spec_fields)
    common = dict(
        run_id=run_id or f"{spec.method}-{spec.seed}-{spec.trial}",
        comparison_id=spec.comparison_id,
        spec=spec,
        method_info=MethodInfo(spec.method, description, citation, requires, ablation_of),
        task_info=TaskInfo("y", ["a"], ["0", "1"], group_names or [g["group"] for g in groups or []], {"test": 10})
        if groups or group_names
        else None,
        labels_used=labels_used,
        supervision=supervision,
        host=host or {},
        config=config,
    )
    if error is not None:
        trace = f"Traceback (most recent call last):\n{error}"
        return RunRecord(**common, status="failed", error=error, traceback=trace)
    budget = spec.budget
    return RunRecord(
        **common,
        status="ok",
        metrics={"val": val if val is not None else metrics(0.5), "test": test if test is not None else metrics(0.5)},
        per_group={"test": {"per_group": groups or []}},
        budget_report=budget_report
        if budget_report is not None
        else {
            "budget": budget.to_dict(),
            "steps": budget.steps,
            "samples_seen": budget.steps * budget.batch_size,
            "steps_per_stage": {"train": budget.steps},
            "wall_time_s": 1.0,
        },
    )


def predicted_run(
    method: str,
    seed: int,
    y: list[int],
    a: list[int],
    y_hat: list[int],
    *,
    trial: int = 0,
    val: dict[str, float] | None = None,
    group_names: tuple[str, ...] = ("g0", "g1"),
    **fields: Any,
) -> tuple[RunRecord, dict[str, np.ndarray]]:
    """A finished run whose test metrics and per-group rows are computed from the given test predictions (as the
    runner does), and those predictions as `predictions.npz` arrays: `store.write(run_id, record, arrays)`."""
    y, a, y_hat = (np.asarray(v, dtype=np.int64) for v in (y, a, y_hat))
    report = compute_metrics(y, y_hat, a, list(group_names))
    summary = nan_to_none(report.summary)
    record = fake_record(method, seed, trial, val=val, test=summary, groups=nan_to_none(report.per_group), **fields)
    record = replace(record, task_info=replace(record.task_info, group_names=list(group_names)))
    scores = np.where(np.eye(2, dtype=bool)[y_hat], 0.8, 0.2).astype(np.float32)
    ids = np.array([f"row{i}" for i in range(len(y))])
    return record, {"test_scores": scores, "test_y": y, "test_a": a, "test_ids": ids}
