"""Executors beyond the in-process loop: one child process per run, or Ray.

Both write the same result store.  A worker that dies (segfault, OOM kill,
os._exit) is recorded as a failed run with its exit status; the grid goes on.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable

from fairfacebench.plugins import Registry
from fairfacebench.spec import RunSpec
from fairfacebench.store import ResultStore

Finished = Callable[[RunSpec, dict], None]


def _child(spec: dict, store_root: str, device: str, cache_dir: str, config: dict | None, threads: int) -> None:
    """Run one spec in a fresh process and write its record itself."""
    import torch

    from fairfacebench.plugins import registry
    from fairfacebench.runner import DataLoaderCache, attempt, resolve_device

    torch.set_num_threads(threads)
    reg = registry()
    run = RunSpec(**spec)
    record, arrays = attempt(run, DataLoaderCache(Path(cache_dir), reg), resolve_device(device), reg, config=config)
    ResultStore(store_root).write(run.run_id, record, arrays)


def _prepare_vlm(value: str, cache_dir: str, threads: int) -> None:
    """Load (and, when its cache is empty, build) the VLM `value` once, before the runs that use it start."""
    import torch

    from fairfacebench.encoders import load_vlm
    from fairfacebench.plugins import registry

    torch.set_num_threads(threads)
    load_vlm(value, registry().encoders, Path(cache_dir), "cpu")


def threads_per_worker(workers: int) -> int:
    """Torch threads of each of `workers` concurrent runs: the CPU threads shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // max(workers, 1))


def run_in_processes(
    todo: list[RunSpec], store: ResultStore, device: str, cache_dir: Path, reg: Registry, finished: Finished, workers: int, config: dict | None
) -> None:
    """Up to `workers` child processes at a time, each with its share of the CPU threads.

    A VLM the runs need is prepared first, in a job of its own (the embedded
    mini-CLIP trains there once when it is not cached), while runs that need
    no VLM go ahead; runs that need it wait for that job.  If preparing
    fails, those runs still start and record the error themselves.
    """
    from fairfacebench.runner import crashed_record

    ctx = mp.get_context("spawn")
    threads = threads_per_worker(workers)
    preparing = sorted({s.vlm for s in todo if s.vlm not in (None, "none")})
    # Runs that read an unlabeled pool or a VLM do the most work per step: start them early, so the grid
    # does not end on one long run while the other workers idle.
    heavy_first = sorted(todo, key=lambda s: not (reg.method(s.method).needs_pool or reg.method(s.method).needs_vlm))
    jobs: list[tuple[str, Any]] = [("prepare", value) for value in preparing] + [("run", spec) for spec in heavy_first]
    running: dict[int, tuple] = {}

    def ready(job: tuple[str, Any]) -> bool:
        kind, item = job
        return kind == "prepare" or item.vlm not in preparing

    try:
        while jobs or running:
            while len(running) < workers and any(ready(j) for j in jobs):
                kind, item = jobs.pop(next(i for i, j in enumerate(jobs) if ready(j)))
                if kind == "prepare":
                    args, target = (item, str(cache_dir), threads), _prepare_vlm
                else:
                    args, target = (item.to_dict(), str(store.root), device, str(cache_dir), config, threads), _child
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
                    store.write(item.run_id, crashed_record(item, reg, f"WorkerDied: worker process exited with code {proc.exitcode} before writing a result", config))
                finished(item, _read(store, item))
    finally:
        for proc, _, _ in running.values():  # interrupted (Ctrl-C, an error here): stop the runs still going
            proc.terminate()
            proc.join()


def _read(store: ResultStore, spec: RunSpec) -> dict:
    import json

    return json.loads((store.path(spec.run_id) / "record.json").read_text())


def _ray_attempt(spec: dict, device: str, cache_dir: str, config: dict | None):
    from fairfacebench.plugins import registry
    from fairfacebench.runner import DataLoaderCache, attempt, resolve_device

    reg = registry()
    return attempt(RunSpec(**spec), DataLoaderCache(Path(cache_dir), reg), resolve_device(device), reg, config=config)


def run_in_ray(
    todo: list[RunSpec],
    store: ResultStore,
    device: str,
    cache_dir: Path,
    reg: Registry,
    finished: Finished,
    address: str | None,
    workers: int,
    config: dict | None,
) -> None:
    """Each run is a Ray task (no retries); the driver writes the store as results arrive."""
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError("--executor ray needs Ray: pip install 'fairfacebench[ray]'") from exc
    from fairfacebench.runner import crashed_record

    started_here = not ray.is_initialized()
    if started_here:
        kwargs = {"address": address} if address else {"num_cpus": max(workers, 1)}
        ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
    try:
        task = ray.remote(max_retries=0, num_cpus=1)(_ray_attempt)
        pending = {task.remote(spec.to_dict(), device, str(cache_dir), config): spec for spec in todo}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(done[0])
            try:
                record, arrays = ray.get(done[0])
            except ray.exceptions.RayError as exc:  # worker crash or task error outside attempt()
                record, arrays = crashed_record(spec, reg, f"{type(exc).__name__}: {exc}", config), None
            store.write(spec.run_id, record, arrays)
            finished(spec, record)
    finally:
        if started_here:
            ray.shutdown()
