"""Expand a benchmark grid into run specs and execute them into the result store."""
from __future__ import annotations

import logging
import os
import platform
import subprocess
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from fairfacebench.budget import BudgetMeter, get_budget
from fairfacebench.metrics.bootstrap import bootstrap_intervals
from fairfacebench.context import FitContext
from fairfacebench.data import LoadedDataset, TaskData, make_task_data
from fairfacebench.encoders import load_vlm, resolve_vlm
from fairfacebench.plugins import Registry, registry
from fairfacebench.spec import RunSpec, spec_hash
from fairfacebench.store import ResultStore
from fairfacebench.training import Augment

log = logging.getLogger("fairfacebench")

TRACKED_PACKAGES = ("fairfacebench", "torch", "torchvision", "timm", "open_clip_torch", "numpy", "fairlearn", "faiss-cpu", "pandas")


@dataclass
class Grid:
    """What `fairbench run` compares: every method on every dataset task, same budget."""

    datasets: list[str]
    methods: list[str]
    tasks: dict[str, list[str]] = field(default_factory=dict)  # dataset -> task names (default: the dataset's first)
    seeds: int = 1
    trials: int = 1
    budget: str = "default"
    resolution: int | None = None
    backbone: str = "mobilenet_v2"
    weights: str = "imagenet"
    augment: Augment = field(default_factory=Augment)
    data_roots: dict[str, str] = field(default_factory=dict)
    dataset_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    bootstrap: int = 1000
    vlm: str = "auto"  # VLM for methods that use one: 'auto' (the dataset's embedded encoder, if any), 'none', or an encoder

    def budget_dict(self) -> dict[str, Any]:
        b = get_budget(self.budget).to_dict()
        if self.resolution:
            b["resolution"] = self.resolution
        return b


def trial_hparams(method_cls: type, trial: int) -> dict[str, Any]:
    """Trial 0 is the method's defaults; trial k > 0 a seeded draw from its search space."""
    if trial == 0:
        return method_cls.default_hparams()
    seed = int(spec_hash({"method": method_cls.name, "trial": trial}), 16) % 2**32
    return method_cls.sample_hparams(np.random.default_rng(seed))


def expand(grid: Grid, reg: Registry | None = None) -> list[RunSpec]:
    reg = reg or registry()
    specs = []
    for ds_name in grid.datasets:
        ds = reg.dataset(ds_name)
        tasks = grid.tasks.get(ds_name) or [ds.tasks[0].name]
        for task in tasks:
            ds.task(task)  # fail early on an unknown task, listing the valid ones
            for m_name in grid.methods:
                cls = reg.method(m_name)
                for trial in range(grid.trials):
                    hp = trial_hparams(cls, trial)
                    for seed in range(grid.seeds):
                        specs.append(
                            RunSpec(
                                dataset=ds_name,
                                task=task,
                                method=m_name,
                                hparams=hp,
                                seed=seed,
                                budget=grid.budget_dict(),
                                backbone=grid.backbone,
                                weights=grid.weights,
                                augment=grid.augment.to_dict(),
                                trial=trial,
                                data_root=grid.data_roots.get(ds_name),
                                dataset_options=grid.dataset_options.get(ds_name, {}),
                                bootstrap=grid.bootstrap,
                                vlm=resolve_vlm(grid.vlm, ds_name, reg.encoders) if cls.needs_vlm else None,
                            )
                        )
    return specs


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in TRACKED_PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    src = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


def default_cache_dir() -> Path:
    return Path(os.environ.get("FAIRBENCH_CACHE", Path.home() / ".cache" / "fairbench"))


class DataLoaderCache:
    """Loaded datasets and pools, shared by the runs of one process."""

    def __init__(self, cache_dir: Path, reg: Registry):
        self.cache_dir, self.reg = cache_dir, reg
        self._datasets: dict[str, LoadedDataset] = {}
        self._pools: dict[str, Any] = {}
        self._vlms: dict[str, Any] = {}

    def vlm(self, value: str | None, device: torch.device) -> Any:
        """The encoder a spec's resolved `vlm` names (loaded once per process); None for 'none' or no VLM."""
        if value is None:
            return None
        if value not in self._vlms:
            self._vlms[value] = load_vlm(value, self.reg.encoders, self.cache_dir, device)
        return self._vlms[value]

    def task_data(self, spec: RunSpec, with_pool: bool) -> TaskData:
        plugin = self.reg.dataset(spec.dataset)
        size = spec.budget["resolution"]
        root = Path(spec.data_root) if spec.data_root else None
        key = f"{spec.dataset}|{size}|{root}|{sorted(spec.dataset_options.items())}"
        if key not in self._datasets:
            self._datasets[key] = plugin.load(root, size, self.cache_dir, **spec.dataset_options)
        pool = None
        if with_pool:
            if key not in self._pools:
                self._pools[key] = plugin.pool(root, size, self.cache_dir, **spec.dataset_options)
            pool = self._pools[key]
        return make_task_data(self._datasets[key], plugin.task(spec.task), pool)


def evaluate(scores: np.ndarray, y: np.ndarray, a: np.ndarray, data: TaskData) -> Any:
    from fairfacebench.metrics.fairness import compute_metrics

    return compute_metrics(y, scores.argmax(1), a, data.group_names, n_classes=data.n_classes, class_names=data.target_classes)


@contextmanager
def gpu_usage(device: torch.device):
    """GPU time (CUDA events) and peak memory of the block, when running on a GPU."""
    stats: dict[str, Any] = {}
    if device.type != "cuda":
        yield stats
        return
    torch.cuda.reset_peak_memory_stats(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    yield stats
    end.record()
    torch.cuda.synchronize(device)
    stats["gpu_time_s"] = round(start.elapsed_time(end) / 1000, 3)
    stats["gpu_peak_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    stats["gpu_name"] = torch.cuda.get_device_name(device)


def run_one(spec: RunSpec, data: TaskData, device: torch.device, reg: Registry, progress: bool = False, vlm: Any = None) -> tuple[dict, dict]:
    """Fit one method on one task and evaluate it on validation and test data."""
    from fairfacebench.metrics.fairness import METRIC_DEFINITIONS

    cls = reg.method(spec.method)
    torch.manual_seed(spec.seed)
    budget = get_budget(spec.budget["name"])
    budget = type(budget)(**spec.budget)
    meter = BudgetMeter(budget)
    ctx = FitContext(data, spec.hparams, meter, spec.seed, device, Augment(**spec.augment), spec.backbone, spec.weights, vlm, progress)
    with gpu_usage(device) as gpu:
        predictor = cls().fit(ctx)
    fit_report = {**meter.report(), **gpu}
    t0 = time.perf_counter()
    val_scores = predictor.predict(data.val.images)
    test_scores = predictor.predict(data._test.images)
    val_report = evaluate(val_scores, data.val.y, data.val.a, data)
    test_report = evaluate(test_scores, data._test.y, data._test.a, data)
    intervals = None
    if spec.bootstrap:
        intervals = bootstrap_intervals(
            data._test.y, test_scores.argmax(1), data._test.a, data.n_groups, data.n_classes, n_resamples=spec.bootstrap, seed=spec.seed
        )
    record = {
        "metrics": {"val": val_report.summary, "test": test_report.summary},
        "test_intervals": intervals,
        "per_group": {"val": val_report.to_dict(), "test": test_report.to_dict()},
        "metric_definitions": METRIC_DEFINITIONS,
        "budget_report": {**fit_report, "eval_time_s": round(time.perf_counter() - t0, 3)},
        "labels_used": cls.label_use(spec.hparams).summary(),
        "labels_touched": sorted(ctx.touched),
        "variant": ctx.log.variant,
        "stages": ctx.log.stages,
        "history": ctx.log.history,
        "weights": ctx.weights_info,
        "vlm": getattr(vlm, "info", None),
    }
    arrays = {
        "test_scores": test_scores.astype(np.float32),
        "test_y": data._test.y,
        "test_a": data._test.a,
        "test_ids": data._test.ids.astype(str),
        "val_scores": val_scores.astype(np.float32),
    }
    return record, arrays


def base_record(spec: RunSpec, reg: Registry, data: TaskData | None) -> dict[str, Any]:
    cls = reg.methods.get(spec.method)
    return {
        "run_id": spec.run_id,
        "spec": spec.to_dict(),
        "method_info": {
            "name": spec.method,
            "description": getattr(cls, "description", ""),
            "citation": getattr(cls, "citation", ""),
            "requires": cls.requirements() if cls else "",
        },
        "task_info": None
        if data is None
        else {
            "target": data.task.target,
            "sensitive": list(data.task.sensitive),
            "target_classes": list(data.target_classes),
            "group_names": list(data.group_names),
            "sizes": {"train": len(data.train), "val": len(data.val), "test": len(data._test)},
        },
        "dataset_info": None if data is None else data.info,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "host": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads()},
    }


def attempt(
    spec: RunSpec, loader: DataLoaderCache, device: torch.device, reg: Registry, progress: bool = False, config: dict | None = None
) -> tuple[dict, dict | None]:
    """Run one spec; any exception becomes a failed record with its traceback."""
    started = time.perf_counter()
    data = None
    try:
        cls = reg.method(spec.method)
        data = loader.task_data(spec, with_pool=cls.needs_pool)
        record, arrays = run_one(spec, data, device, reg, progress, vlm=loader.vlm(spec.vlm, device))
        record = {**base_record(spec, reg, data), "status": "ok", **record}
    except Exception as exc:  # recorded with its traceback; the grid continues
        record = {
            **base_record(spec, reg, data),
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }
        arrays = None
        log.error("run %s failed: %s", spec.label, record["error"])
    record["wall_time_s"] = round(time.perf_counter() - started, 3)
    record["config"] = config
    return record, arrays


def crashed_record(spec: RunSpec, reg: Registry, error: str, config: dict | None) -> dict:
    """The record of a run whose worker process died before it could write one."""
    return {**base_record(spec, reg, None), "status": "failed", "error": error, "traceback": None, "config": config}


def execute(
    specs: list[RunSpec],
    store: ResultStore,
    device: str = "auto",
    cache_dir: Path | None = None,
    retry_failed: bool = False,
    progress: bool = False,
    on_result: Callable[[RunSpec, str], None] | None = None,
    reg: Registry | None = None,
    executor: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
    config: dict | None = None,
) -> dict[str, int]:
    """Run every unfinished spec; failed runs are recorded and the grid goes on.

    executor 'local' runs in this process (workers=1) or in one child process
    per run (workers>1, so a crashing run cannot take the grid down); 'ray'
    sends runs to a Ray cluster.  Every executor writes the same store.
    """
    from fairfacebench.executors import run_in_processes, run_in_ray

    reg = reg or registry()
    resolve_device(device)  # fail before any work when the device is unavailable
    cache_dir = cache_dir or default_cache_dir()
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    todo = []
    for spec in specs:
        status = store.status(spec.run_id)
        if status == "ok" or (status == "failed" and not retry_failed):
            counts["skipped"] += 1
            if on_result:
                on_result(spec, f"skipped ({status})")
        else:
            todo.append(spec)

    def finished(spec: RunSpec, record: dict) -> None:
        counts[record["status"]] += 1
        if on_result:
            on_result(spec, "ok" if record["status"] == "ok" else f"FAILED: {record['error']}")

    if executor == "ray":
        run_in_ray(todo, store, device, cache_dir, reg, finished, ray_address, workers, config)
    elif executor == "local" and workers > 1:
        run_in_processes(todo, store, device, cache_dir, reg, finished, workers, config)
    elif executor == "local":
        loader = DataLoaderCache(cache_dir, reg)
        dev = resolve_device(device)
        for spec in todo:
            record, arrays = attempt(spec, loader, dev, reg, progress, config)
            store.write(spec.run_id, record, arrays)
            finished(spec, record)
    else:
        raise ValueError(f"unknown executor '{executor}'; use 'local' or 'ray'")
    return counts
