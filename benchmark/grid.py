"""A grid of run specs into the result store: claim what is unfinished, compute it with an executor, count outcomes."""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable

from fairfacebench.executors import Grid, in_worker_processes, run_in_processes, run_in_ray, run_locally
from fairfacebench.loading import resolve_device
from fairfacebench.progress import GridView
from fairfacebench.provenance import hardware_of, host_info
from fairfacebench.record import RunRecord
from fairfacebench.spec import RunSpec
from fairfacebench.store import ResultStore

log = logging.getLogger("fairfacebench")


def execute(
    specs: list[RunSpec],
    store: ResultStore,
    runner: Any,
    retry_failed: bool = False,
    on_result: Callable[[RunSpec, str], None] | None = None,
    executor: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
    view: GridView | None = None,
    run_timeout_s: float = 0.0,
    rerun: Callable[[RunRecord], bool] | None = None,
    launch_until: float | None = None,
) -> dict[str, int]:
    """Run every unfinished spec with `runner`, and the finished ones `rerun(record)` asks for again (`--force`,
    `--rerun-changed`, a missing transfer evaluation: their new record replaces the old); failed runs are recorded
    and the grid goes on.

    executor 'local' runs in this process (workers=1) or in one child process
    per run (workers>1, so a crashing run cannot take the grid down); 'ray'
    sends runs to a Ray cluster.  Every executor writes the same store and
    reports to `view`; a run past its wall-clock limit (`run_timeout_s`, 0 =
    derived from its budget) is stopped and recorded as failed.  A finished ok run whose record `rerun` returns
    True for is computed again (it lacks a transfer evaluation the plan asks for: the model is not stored).
    `launch_until` (a time.time() value, `--until`): no run starts after it; those running finish and are
    recorded, the others are left unclaimed for the next grid (they have no outcome: `on_result` never hears of them).
    """
    resolve_device(runner.device)  # fail before any work when the device is unavailable
    counts = {"ok": 0, "failed": 0, "skipped": 0}

    def skipped(spec: RunSpec, why: str) -> None:
        counts["skipped"] += 1
        if on_result:
            on_result(spec, f"skipped ({why})")

    todo = claim_unfinished(specs, store, retry_failed, skipped, rerun)
    warn_oversubscribed(todo, executor, workers)
    view = view or GridView(0)
    view.begin(len(todo))

    def finished(spec: RunSpec, record: RunRecord) -> None:
        counts[record.status] += 1
        view.end(spec.run_id, record.status, record.error or "", record.wall_time_s)
        if on_result:
            on_result(spec, "ok" if record.ok else f"FAILED: {record.error}")

    def may_launch() -> bool:
        return launch_until is None or time.time() < launch_until

    grid = Grid(store, runner, view, finished, run_timeout_s, may_launch)
    try:
        if executor == "ray":  # the runs' pool embedding is sharded across the cluster too
            sharded = Grid(store, runner.sharding_on_ray(), view, finished, run_timeout_s, may_launch)
            run_in_ray(sharded, todo, ray_address, workers)
        elif in_worker_processes(executor, workers):
            run_in_processes(grid, todo, workers)
        elif executor == "local":
            run_locally(grid, todo)
        else:
            raise ValueError(f"unknown executor '{executor}'; use 'local' or 'ray'")
    finally:  # runs left unfinished (an interrupt, an error) are free for the next process at once
        for spec in todo:
            store.release(spec.run_id)
    return counts


def claim_unfinished(
    specs: list[RunSpec],
    store: ResultStore,
    retry_failed: bool,
    skipped: Callable[[RunSpec, str], None],
    rerun: Callable[[RunRecord], bool] | None = None,
) -> list[RunSpec]:
    """The specs this process will compute, each claimed in the store; finished runs (unless `rerun` asks for them
    again) and others' claims are skipped."""
    todo = []
    elsewhere = 0
    for spec in specs:
        changed = content_changes(store.record(spec.run_id), spec)
        if changed:
            log.warning(
                "run %s: its %s changed since it was computed (same file names and sizes, other bytes): computing it "
                "again",
                spec.label,
                " and ".join(changed),
            )
        if finished_status(store, spec, retry_failed, rerun):
            where = other_hardware(store.record(spec.run_id))
            elsewhere += where is not None
            skipped(spec, store.status(spec.run_id) + (f", computed on other hardware: {where}" if where else ""))
            continue
        holder = store.claim(spec.run_id)
        if holder is None and finished_status(store, spec, retry_failed, rerun):  # finished while we claimed it
            store.release(spec.run_id)
            holder = store.status(spec.run_id)
        if holder is None:
            todo.append(spec)
        else:
            skipped(spec, holder)
    if elsewhere:
        log.warning(
            "%d finished run(s) in %s were computed on other hardware than this machine (%s): they are kept, not "
            "recomputed (the same run id may round differently on another CPU); the leaderboard names each table's "
            "hardware",
            elsewhere,
            store.root,
            hardware_of(host_info()),
        )
    return todo


def other_hardware(record: RunRecord | None) -> str | None:
    """The hardware a stored run was computed on, when it is not this machine's (None when it is, or unknown)."""
    if record is None or not record.host:
        return None
    theirs = hardware_of(record.host)
    return theirs if theirs != hardware_of(host_info()) else None


def finished_status(
    store: ResultStore, spec: RunSpec, retry_failed: bool, rerun: Callable[[RunRecord], bool] | None = None
) -> bool:
    record = store.record(spec.run_id)
    if record is None:
        return False
    if record.ok:
        return not content_changes(record, spec) and (rerun is None or not rerun(record))
    return not retry_failed


def content_changes(record: RunRecord | None, spec: RunSpec) -> list[str]:
    """What a finished run read that holds other bytes now ('data', 'weights', 'pool', 'vlm', 'eval-on NAME'): the
    run id follows names, sizes and labels only, so such a run is computed again.  A digest the record lacks (made
    before that digest) is not compared, except a --weights file's and an encoder's weights', whose sha256 every record
    keeps in `weights` and `vlm`."""
    if record is None or not record.ok:
        return []
    then = dict(record.spec.content)
    for part, kept in (("weights", record.weights), ("vlm", record.vlm)):
        if part not in then and isinstance((kept or {}).get("sha256"), str):
            then[part] = kept["sha256"]
    return [part for part, digest in spec.content.items() if then.get(part, digest) != digest]


def warn_oversubscribed(todo: list[RunSpec], executor: str, workers: int) -> None:
    """Warn when concurrent runs ask for more compute threads than the CPU has (allowed, but slower)."""
    threads = max((s.threads for s in todo), default=1)
    cores = os.cpu_count() or 1
    if in_worker_processes(executor, workers) and workers * threads > cores:
        log.warning(
            "%d workers x %d threads per run = %d compute threads on %d CPU(s): runs will compete for the cores "
            "(results are unaffected; lower --workers or --threads to run faster)",
            workers,
            threads,
            workers * threads,
            cores,
        )
