"""Executors beyond the in-process loop: one child process per run, or Ray.

Both write the same result store.  A worker that dies (segfault, OOM kill,
os._exit) is recorded as a failed run with its exit status; the grid goes on.
"""
from __future__ import annotations

import multiprocessing as mp
from multiprocessing.connection import wait
from pathlib import Path
from typing import Callable

from fairfacebench.plugins import Registry
from fairfacebench.spec import RunSpec
from fairfacebench.store import ResultStore

Finished = Callable[[RunSpec, dict], None]


def _child(spec: dict, store_root: str, device: str, cache_dir: str, config: dict | None) -> None:
    """Run one spec in a fresh process and write its record itself."""
    from fairfacebench.plugins import registry
    from fairfacebench.runner import DataLoaderCache, attempt, resolve_device

    reg = registry()
    run = RunSpec(**spec)
    record, arrays = attempt(run, DataLoaderCache(Path(cache_dir), reg), resolve_device(device), reg, config=config)
    ResultStore(store_root).write(run.run_id, record, arrays)


def run_in_processes(
    todo: list[RunSpec], store: ResultStore, device: str, cache_dir: Path, reg: Registry, finished: Finished, workers: int, config: dict | None
) -> None:
    from fairfacebench.runner import crashed_record

    ctx = mp.get_context("spawn")
    queue = list(todo)
    running: dict[int, tuple] = {}
    while queue or running:
        while queue and len(running) < workers:
            spec = queue.pop(0)
            proc = ctx.Process(target=_child, args=(spec.to_dict(), str(store.root), device, str(cache_dir), config), daemon=True)
            proc.start()
            running[proc.sentinel] = (proc, spec)
        for sentinel in wait(list(running)):
            proc, spec = running.pop(sentinel)
            proc.join()
            if store.status(spec.run_id) is None:
                store.write(spec.run_id, crashed_record(spec, reg, f"WorkerDied: worker process exited with code {proc.exitcode} before writing a result", config))
            finished(spec, _read(store, spec))


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
