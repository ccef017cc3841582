"""Run specs into the result store: load the task, fit the method, evaluate, record; executors decide where."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import time
import traceback
from contextlib import contextmanager
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from fairfacebench.budget import Budget
from fairfacebench.context import FitSettings
from fairfacebench.data import LoadedDataset, TaskData, UnlabeledPool, make_task_data
from fairfacebench.diagnostics import diagnose
from fairfacebench.executors import run_in_processes, run_in_ray, run_locally
from fairfacebench.fitting import fit_under_meter, predict
from fairfacebench.metrics.bootstrap import bootstrap_intervals
from fairfacebench.metrics.fairness import METRIC_DEFINITIONS, compute_metrics
from fairfacebench.plugins import Registry, registry
from fairfacebench.progress import GridView
from fairfacebench.progress import stage as progress_stage
from fairfacebench.settings import Augment, default_cache_dir
from fairfacebench.sharding import RayShards
from fairfacebench.spec import RunSpec
from fairfacebench.store import ResultStore
from fairfacebench.vlm import load_vlm

log = logging.getLogger("fairfacebench")

TRACKED_PACKAGES = (
    "fairfacebench",
    "torch",
    "torchvision",
    "timm",
    "open_clip_torch",
    "numpy",
    "fairlearn",
    "faiss-cpu",
    "pandas",
)


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


class DataLoaderCache:
    """Loaded datasets, pools and VLMs, shared by the runs of one process."""

    def __init__(self, cache_dir: Path, reg: Registry):
        self.cache_dir, self.reg = cache_dir, reg
        self._datasets: dict[str, LoadedDataset] = {}
        self._pools: dict[str, UnlabeledPool | None] = {}
        self._vlms: dict[str, Any] = {}

    def vlm(self, value: str, device: torch.device | str) -> Any:
        """The encoder a spec's resolved `vlm` names (loaded once per process); None for 'none'."""
        if value not in self._vlms:
            self._vlms[value] = load_vlm(value, self.reg.encoders, self.cache_dir, device)
        return self._vlms[value]

    def task_data(self, spec: RunSpec, with_pool: bool) -> TaskData:
        plugin = self.reg.dataset(spec.dataset)
        root = Path(spec.data_root) if spec.data_root else None
        per_task = {"task": spec.task} if plugin.splits_per_task else {}
        key = f"{spec.dataset}|{spec.resolution}|{root}|{sorted(spec.dataset_options.items())}|{per_task}"
        if key not in self._datasets:
            self._datasets[key] = plugin.load(root, spec.resolution, self.cache_dir, **per_task, **spec.dataset_options)
        pool = self.pool(spec, root) if with_pool else None
        return make_task_data(self._datasets[key], plugin.task(spec.task), pool)

    def pool(self, spec: RunSpec, root: Path | None) -> UnlabeledPool | None:
        """The unlabeled pool a spec names: its dataset's own, none, or one from a pool plugin."""
        kind = spec.pool["kind"]
        if kind == "none":
            return None
        plugin = self.reg.dataset(spec.dataset)
        per_task = {"task": spec.task} if plugin.splits_per_task else {}
        key = f"{spec.resolution}|{sorted(spec.pool.items())}|{sorted(spec.dataset_options.items())}|{per_task}"
        if key not in self._pools:
            pool_root = Path(spec.pool["root"]) if spec.pool.get("root") else None
            size = spec.resolution
            if kind == "dataset":
                found = plugin.pool(root, size, self.cache_dir, **per_task, **spec.dataset_options)
            elif kind == "dataset-train":
                source = self.reg.dataset(spec.pool["source"])
                found = self.reg.pools[kind].load(source, size, self.cache_dir, root=pool_root)
            else:
                found = self.reg.pools[kind].load(pool_root or spec.pool["source"], size, self.cache_dir)
            self._pools[key] = found
        return self._pools[key]


def evaluate(scores: np.ndarray, y: np.ndarray, a: np.ndarray, data: TaskData) -> Any:
    return compute_metrics(
        y, scores.argmax(1), a, data.group_names, n_classes=data.n_classes, class_names=data.target_classes
    )


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


class UnmeteredCompute(RuntimeError):
    """A method trained or embedded images outside the meter (its own optimizer, its own network)."""


class InvalidPredictions(RuntimeError):
    """A predictor returned scores that are not (N, C) probabilities: the run cannot be scored."""


PROBABILITY_TOLERANCE = 1e-3  # rows of float32 softmax sum to 1 far closer than this


def checked_scores(scores: Any, n: int, n_classes: int, split: str) -> np.ndarray:
    """The predictor's scores, refused unless an (n, n_classes) array of finite probabilities (rows sum to 1)."""
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidPredictions(
            f"{split} scores are not a numeric array ({exc}); return (N, C) probabilities"
        ) from None
    if arr.shape != (n, n_classes):
        raise InvalidPredictions(
            f"{split} scores have shape {arr.shape}, expected ({n}, {n_classes}): one row per image"
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InvalidPredictions(
            f"{split} scores hold {int(bad.sum())} NaN or infinite value(s) (first in row {int(np.argmax(bad.any(1)))})"
        )
    off = np.abs(arr.sum(axis=1) - 1)
    worst = int(off.argmax())
    if (
        arr.min() < -PROBABILITY_TOLERANCE
        or arr.max() > 1 + PROBABILITY_TOLERANCE
        or off[worst] > PROBABILITY_TOLERANCE
    ):
        raise InvalidPredictions(
            f"{split} scores are not probabilities (values in [{arr.min():.4g}, {arr.max():.4g}], row {worst} sums "
            f"to {arr[worst].sum():.4g}): return rows in [0, 1] summing to 1, e.g. a softmax of the logits"
        )
    return arr


def run_one(
    spec: RunSpec,
    data: TaskData,
    device: torch.device,
    reg: Registry,
    progress: bool = False,
    vlm: Any = None,
    shards: RayShards | None = None,
) -> tuple[dict, dict]:
    """Fit one method on one task (metered and watched), evaluate it on validation's selection part and on test."""
    cls = reg.method(spec.method)
    settings = FitSettings(
        hparams=dict(spec.hparams),
        seed=spec.seed,
        budget=Budget(**spec.budget),
        device=device,
        augment=Augment(**spec.augment),
        backbone=spec.backbone,
        weights=spec.weights,
        transductive=cls.transductive,
        progress=progress,
    )
    with gpu_usage(device) as gpu:
        fitted = fit_under_meter(cls, data, settings, vlm, shards)
    if fitted.violations:
        raise UnmeteredCompute(fitted.violations.describe())
    fit_report = {**fitted.budget_report, **gpu}
    t0 = time.perf_counter()
    selection = data.val_select if data.val_select is not None else data.val
    at_inference = cls.label_use(spec.hparams).sensitive_at_inference
    predictor = fitted.predictor
    val_scores = checked_scores(
        predict(predictor, selection, at_inference), len(selection), data.n_classes, "validation"
    )
    test_scores = checked_scores(predict(predictor, data.test, at_inference), len(data.test), data.n_classes, "test")
    val_report = evaluate(val_scores, selection.y, selection.a, data)
    test_report = evaluate(test_scores, data.test.y, data.test.a, data)
    intervals = None
    if spec.bootstrap:
        y_hat = test_scores.argmax(1)
        intervals = bootstrap_intervals(
            data.test.y, y_hat, data.test.a, data.n_groups, data.n_classes, n_resamples=spec.bootstrap, seed=spec.seed
        )
    disclosed = supervision(cls, spec.hparams, vlm)
    record = {
        "metrics": {"val": val_report.summary, "test": test_report.summary},
        "test_intervals": intervals,
        "per_group": {"val": val_report.to_dict(), "test": test_report.to_dict()},
        "metric_definitions": METRIC_DEFINITIONS,
        "budget_report": {**fit_report, "eval_time_s": round(time.perf_counter() - t0, 3)},
        "labels_used": disclosed["summary"],
        "supervision": disclosed,
        "labels_touched": sorted(fitted.touched),
        "variant": fitted.log.variant,
        "stages": fitted.log.stages,
        "diagnostics": diagnose(fitted.log.evidence, data),
        "history": fitted.log.history,
        "weights": fitted.weights,
        "vlm": getattr(vlm, "info", None),
    }
    arrays = {
        "test_scores": test_scores.astype(np.float32),
        "test_y": data.test.y,
        "test_a": data.test.a,
        "test_ids": data.test.ids.astype(str),
        "val_scores": val_scores.astype(np.float32),
        "val_ids": selection.ids.astype(str),
    }
    return record, arrays


def supervision(cls: type, hparams: dict[str, Any], vlm: Any) -> dict[str, Any]:
    """Every label source a method reads: its declared labels, a VLM's label-derived captions, the test images."""
    use = cls.label_use(hparams)
    captions = ((vlm.info or {}).get("report") or {}).get("captions_name") if vlm is not None else None
    parts = [use.summary()]
    if captions:
        parts.append(f"VLM captions name {', '.join(captions)}")
    if cls.transductive:
        parts.append("test images (transductive)")
    return {
        "target": use.target,
        "sensitive": use.sensitive,
        "sensitive_at_inference": use.sensitive_at_inference,
        "vlm_captions_name": captions,
        "test_images": cls.transductive,
        "summary": "; ".join(parts),
    }


def base_record(spec: RunSpec, reg: Registry, data: TaskData | None) -> dict[str, Any]:
    cls = reg.methods.get(spec.method)
    return {
        "run_id": spec.run_id,
        "comparison_id": spec.comparison_id,
        "spec": spec.to_dict(),
        "method_info": {
            "name": spec.method,
            "description": getattr(cls, "description", ""),
            "citation": getattr(cls, "citation", ""),
            "requires": cls.requirements() if cls else "",
            "ablation_of": getattr(cls, "ablation_of", None),
        },
        "task_info": None
        if data is None
        else {
            "target": data.task.target,
            "sensitive": list(data.task.sensitive),
            "target_classes": list(data.target_classes),
            "group_names": list(data.group_names),
            "sizes": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        },
        "dataset_info": None if data is None else data.info,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "host": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(), **cpu_info()},
    }


def error_line(exc: BaseException) -> str:
    """The one-line error of a failed run."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: the method called sys.exit({exc.code!r}); a method must raise an exception instead"
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def compute_threads(n: int):
    """Torch's intra-op threads for one run (the spec's `threads`), restored afterwards in this process."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    """The CPU model and instruction-set flags (/proc/cpuinfo) and the SIMD level torch dispatches to."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() in ("model name", "flags", "Features") and key.strip() not in fields:
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return {
        "cpu_model": fields.get("model name") or platform.processor() or None,
        "cpu_flags": sorted((fields.get("flags") or fields.get("Features") or "").split()),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


class SpecRunner:
    """Computes one run spec into (record, arrays); what every executor calls, in this process or another.

    Picklable: loaded data are rebuilt in each process that unpickles it, and
    so is the plugin registry unless a custom one (`reg`) was given.
    """

    def __init__(
        self,
        device: str = "auto",
        cache_dir: Path | None = None,
        config: dict | None = None,
        progress: bool = False,
        reg: Registry | None = None,
    ):
        self.device, self.config, self.progress, self.reg = device, config, progress, reg
        self.cache_dir = Path(cache_dir or default_cache_dir())
        self.ray_shards = False  # embed VLM inputs of more than one shard as Ray tasks (see sharding_on_ray)
        self._loader: DataLoaderCache | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_loader": None}

    def sharding_on_ray(self) -> "SpecRunner":
        """A copy whose runs embed large image arrays (a pool) as Ray tasks: for runs that execute on a Ray cluster."""
        copy = SpecRunner(self.device, self.cache_dir, self.config, self.progress, self.reg)
        copy.ray_shards = True
        return copy

    @property
    def loader(self) -> DataLoaderCache:
        if self._loader is None:
            self._loader = DataLoaderCache(self.cache_dir, self.reg or registry())
        return self._loader

    def __call__(self, spec: RunSpec) -> tuple[dict, dict | None]:
        """Run one spec; any exception becomes a failed record with its traceback."""
        reg = self.loader.reg
        started = time.perf_counter()
        data = None
        with compute_threads(spec.threads):
            try:
                device = resolve_device(self.device)
                cls = reg.method(spec.method)
                progress_stage("loading data")
                data = self.loader.task_data(spec, with_pool=cls.needs_pool)
                vlm = self.loader.vlm(spec.vlm, device) if cls.needs_vlm else None
                shards = RayShards(threads=spec.threads) if self.ray_shards else None
                record, arrays = run_one(spec, data, device, reg, self.progress, vlm=vlm, shards=shards)
                record = {**base_record(spec, reg, data), "status": "ok", **record}
            # sys.exit() in a method fails its run like an exception (os._exit needs --workers > 1: README, Faults).
            except (Exception, SystemExit) as exc:  # recorded with its traceback; the grid continues
                record = {
                    **base_record(spec, reg, data),
                    "status": "failed",
                    "error": error_line(exc),
                    "traceback": traceback.format_exc(),
                }
                arrays = None
                log.error("run %s failed: %s", spec.label, record["error"])
        record["wall_time_s"] = round(time.perf_counter() - started, 3)
        record["config"] = self.config
        return record, arrays

    def prepare_vlm(self, value: str) -> None:
        """Load (and, when its cache is empty, build) the VLM `value` once, before the runs that use it start."""
        self.loader.vlm(value, "cpu")

    def crashed(self, spec: RunSpec, error: str) -> dict:
        """The record of a run whose process died before it could write one."""
        return {
            **base_record(spec, self.loader.reg, None),
            "status": "failed",
            "error": error,
            "traceback": None,
            "config": self.config,
        }

    def is_heavy(self, spec: RunSpec) -> bool:
        """Runs that read a pool or a VLM do the most work per step: executors start them first."""
        cls = self.loader.reg.method(spec.method)
        return cls.needs_pool or cls.needs_vlm

    def needs_vlm(self, spec: RunSpec) -> bool:
        """Whether the run loads its comparison's VLM (executors prepare it once, before such runs)."""
        return self.loader.reg.method(spec.method).needs_vlm and spec.vlm != "none"


def execute(
    specs: list[RunSpec],
    store: ResultStore,
    runner: SpecRunner,
    retry_failed: bool = False,
    on_result: Callable[[RunSpec, str], None] | None = None,
    executor: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
    view: GridView | None = None,
    run_timeout_s: float = 0.0,
) -> dict[str, int]:
    """Run every unfinished spec with `runner`; failed runs are recorded and the grid goes on.

    executor 'local' runs in this process (workers=1) or in one child process
    per run (workers>1, so a crashing run cannot take the grid down); 'ray'
    sends runs to a Ray cluster.  Every executor writes the same store and
    reports to `view`; a run past its wall-clock limit (`run_timeout_s`, 0 =
    derived from its budget) is stopped and recorded as failed.
    """
    resolve_device(runner.device)  # fail before any work when the device is unavailable
    counts = {"ok": 0, "failed": 0, "skipped": 0}

    def skipped(spec: RunSpec, why: str) -> None:
        counts["skipped"] += 1
        if on_result:
            on_result(spec, f"skipped ({why})")

    todo = claim_unfinished(specs, store, retry_failed, skipped)
    warn_oversubscribed(todo, executor, workers)
    view = view or GridView(0)
    view.begin(len(todo))

    def finished(spec: RunSpec, record: dict) -> None:
        counts[record["status"]] += 1
        view.end(spec.run_id, record["status"], record.get("error") or "")
        if on_result:
            on_result(spec, "ok" if record["status"] == "ok" else f"FAILED: {record['error']}")

    try:
        if executor == "ray":  # the runs' pool embedding is sharded across the cluster too
            run_in_ray(todo, store, runner.sharding_on_ray(), finished, ray_address, workers, view, run_timeout_s)
        elif executor == "local" and workers > 1:
            run_in_processes(todo, store, runner, finished, workers, view, run_timeout_s)
        elif executor == "local":
            run_locally(todo, store, runner, finished, view, run_timeout_s)
        else:
            raise ValueError(f"unknown executor '{executor}'; use 'local' or 'ray'")
    finally:  # runs left unfinished (an interrupt, an error) are free for the next process at once
        for spec in todo:
            store.release(spec.run_id)
    return counts


def claim_unfinished(
    specs: list[RunSpec], store: ResultStore, retry_failed: bool, skipped: Callable[[RunSpec, str], None]
) -> list[RunSpec]:
    """The specs this process will compute, each claimed in the store; finished runs and others' claims are skipped."""
    todo = []
    for spec in specs:
        if finished_status(store, spec, retry_failed):
            skipped(spec, store.status(spec.run_id))
            continue
        holder = store.claim(spec.run_id)
        if holder is None and finished_status(store, spec, retry_failed):  # finished while we claimed it
            store.release(spec.run_id)
            holder = store.status(spec.run_id)
        if holder is None:
            todo.append(spec)
        else:
            skipped(spec, holder)
    return todo


def finished_status(store: ResultStore, spec: RunSpec, retry_failed: bool) -> bool:
    status = store.status(spec.run_id)
    return status == "ok" or (status == "failed" and not retry_failed)


def warn_oversubscribed(todo: list[RunSpec], executor: str, workers: int) -> None:
    """Warn when concurrent runs ask for more compute threads than the CPU has (allowed, but slower)."""
    threads = max((s.threads for s in todo), default=1)
    cores = os.cpu_count() or 1
    if executor == "local" and workers > 1 and workers * threads > cores:
        log.warning(
            "%d workers x %d threads per run = %d compute threads on %d CPU(s): runs will compete for the cores "
            "(results are unaffected; lower --workers or --threads to run faster)",
            workers,
            threads,
            workers * threads,
            cores,
        )
