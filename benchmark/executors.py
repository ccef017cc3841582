"""Where runs execute: in this process, one child process per run, or on Ray; all write the same store.

An executor receives a run callable (`runner(spec) -> (record, arrays)`, with
`prepare_vlm`, `crashed`, `is_heavy` and `needs_vlm`; see `runner.SpecRunner`) and never
imports the runner.  A worker that dies (segfault, OOM kill, os._exit) is
recorded as a failed run with its exit status; the grid goes on.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from multiprocessing.connection import wait
from typing import Any, Callable

from fairfacebench.spec import RunSpec
from fairfacebench.store import RECORD, ResultStore

Finished = Callable[[RunSpec, dict], None]


def run_locally(todo: list[RunSpec], store: ResultStore, runner: Any, finished: Finished) -> None:
    """One run after another in this process."""
    for spec in todo:
        record, arrays = runner(spec)
        store.write(spec.run_id, record, arrays)
        finished(spec, record)


def _child(runner: Any, spec: RunSpec, store_root: str, threads: int) -> None:
    """Run one spec in a fresh process and write its record itself (large arrays never cross a pipe)."""
    import torch

    torch.set_num_threads(spec.threads)
    record, arrays = runner(spec)
    ResultStore(store_root).write(spec.run_id, record, arrays)


def _prepare(runner: Any, value: str, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    runner.prepare_vlm(value)


def threads_per_worker(workers: int) -> int:
    """Torch threads of each of `workers` concurrent runs: the CPU threads shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // max(workers, 1))


def run_in_processes(todo: list[RunSpec], store: ResultStore, runner: Any, finished: Finished, workers: int) -> None:
    """Up to `workers` child processes at a time, each with its share of the CPU threads.

    A VLM the runs need is prepared first, in a job of its own (the embedded
    mini-CLIP trains there once when it is not cached), while runs that need
    no VLM go ahead; runs that need it wait for that job.  If preparing
    fails, those runs still start and record the error themselves.
    """
    ctx = mp.get_context("spawn")
    threads = threads_per_worker(workers)
    preparing = sorted({s.vlm for s in todo if runner.needs_vlm(s)})
    # Heavy runs first, so the grid does not end on one long run while the other workers idle.
    heavy_first = sorted(todo, key=lambda s: not runner.is_heavy(s))
    jobs: list[tuple[str, Any]] = [("prepare", value) for value in preparing] + [("run", spec) for spec in heavy_first]
    running: dict[int, tuple] = {}

    def ready(job: tuple[str, Any]) -> bool:
        kind, item = job
        return kind == "prepare" or not runner.needs_vlm(item) or item.vlm not in preparing

    try:
        while jobs or running:
            while len(running) < workers and any(ready(j) for j in jobs):
                kind, item = jobs.pop(next(i for i, j in enumerate(jobs) if ready(j)))
                if kind == "prepare":
                    target, args = _prepare, (runner, item, threads)
                else:
                    target, args = _child, (runner, item, str(store.root), threads)
                # Not daemonic: a run may start processes of its own (the image-cache builder's worker pool).
                proc = ctx.Process(target=target, args=args, daemon=False)
                proc.start()
                running[proc.sentinel] = (proc, kind, item)
            for sentinel in wait(list(running)):
                proc, kind, item = running.pop(sentinel)
                proc.join()
                if kind == "prepare":
                    preparing.remove(item)
                    continue
                if store.status(item.run_id) is None:
                    error = f"WorkerDied: worker process exited with code {proc.exitcode} before writing a result"
                    store.write(item.run_id, runner.crashed(item, error))
                finished(item, json.loads((store.path(item.run_id) / RECORD).read_text()))
    finally:
        for proc, _, _ in running.values():  # interrupted (Ctrl-C, an error here): stop the runs still going
            proc.terminate()
            proc.join()


def run_in_ray(
    todo: list[RunSpec], store: ResultStore, runner: Any, finished: Finished, address: str | None, workers: int
) -> None:
    """Each run is a Ray task (no retries); the driver writes the store as results arrive."""
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError("--executor ray needs Ray: pip install 'fairfacebench[ray]'") from exc

    started_here = not ray.is_initialized()
    if started_here:
        kwargs = {"address": address} if address else {"num_cpus": max(workers, 1)}
        ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
    try:
        task = ray.remote(max_retries=0, num_cpus=1)(lambda r, spec: r(spec))
        pending = {task.remote(runner, spec): spec for spec in todo}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(done[0])
            try:
                record, arrays = ray.get(done[0])
            except ray.exceptions.RayError as exc:  # worker crash or task error outside the runner
                record, arrays = runner.crashed(spec, f"{type(exc).__name__}: {exc}"), None
            store.write(spec.run_id, record, arrays)
            finished(spec, record)
    finally:
        if started_here:
            ray.shutdown()
