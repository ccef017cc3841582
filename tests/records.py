"""Run records for tests of the store, the leaderboard and the exports: typed `RunRecord`s with every field the
store checks, built from the few numbers a test cares about."""

from __future__ import annotations

from typing import Any

from fairfacebench.budget import Budget
from fairfacebench.record import MethodInfo, RunRecord, TaskInfo
from fairfacebench.spec import RunSpec


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
