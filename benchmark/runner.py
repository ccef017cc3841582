"""One run spec into a run record: load its task, fit the method under the meter, score it, assemble the record.

`SpecRunner` is what every executor calls (`grid.execute` decides where);
loading is `loading`, the prediction check and metrics are `scoring`, the
provenance every record carries is `provenance`.
"""

from __future__ import annotations

import logging
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fairfacebench.context import FitSettings, RunLog
from fairfacebench.data import LabeledSplit, Split, TaskData, cell_counts, tiny_cells
from fairfacebench.diagnostics import diagnose
from fairfacebench.fitting import fit_under_meter, predict_under_meter
from fairfacebench.guards import UnmeteredCompute
from fairfacebench.loading import DataLoaderCache, resolve_device
from fairfacebench.method_code import method_code
from fairfacebench.metrics.bootstrap import bootstrap_intervals
from fairfacebench.metrics.fairness import METRIC_DEFINITIONS
from fairfacebench.plugins import Registry, registry
from fairfacebench.progress import stage as progress_stage
from fairfacebench.provenance import git_commit, host_info, package_versions, portable, utc_now
from fairfacebench.record import LISTING_LIMIT, Isolation, MethodInfo, RunRecord, TaskInfo, listings_cut
from fairfacebench.scoring import checked_scores, evaluate
from fairfacebench.settings import default_cache_dir
from fairfacebench.sharding import RayShards
from fairfacebench.spec import RunSpec
from fairfacebench.threads import compute_threads
from fairfacebench.transfer import TransferInput, TransferPlan, TransferTarget, score_transfer, transfer_input

log = logging.getLogger("fairfacebench")


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


def fit_settings(spec: RunSpec, cls: type, device: torch.device, progress: bool = False) -> FitSettings:
    """What the fit context of `spec` needs besides its data."""
    return FitSettings(
        hparams=dict(spec.hparams),
        seed=spec.seed,
        budget=spec.budget,
        device=device,
        augment=spec.augment,
        backbone=spec.backbone,
        weights=spec.weights,
        transductive=cls.transductive,
        progress=progress,
    )


def selection_split(data: TaskData) -> LabeledSplit:
    """The validation rows model selection reads (the fit part when a task has no separate selection part)."""
    return data.val_select if data.val_select is not None else data.val


def run_one(
    spec: RunSpec,
    data: TaskData,
    device: torch.device,
    reg: Registry,
    progress: bool = False,
    vlm: Any = None,
    shards: RayShards | None = None,
    transfer: list[TransferInput] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Fit one method on one task (metered and watched), evaluate it on validation's selection part, on test and on
    each `transfer` dataset's test rows: the ok record's fields (metrics, intervals, budget report, what the method
    did, transfer evaluations) and the prediction arrays."""
    cls = reg.method(spec.method)
    with gpu_usage(device) as gpu:
        fitted = fit_under_meter(cls, data, fit_settings(spec, cls, device, progress), vlm, shards)
    if fitted.violations:
        raise UnmeteredCompute(fitted.violations.describe())
    selection = selection_split(data)
    at_inference = cls.label_use(spec.hparams).sensitive_at_inference
    transfer = transfer or []
    requests = [(split.images, split.a if at_inference else None) for split in (selection, data.test)]
    predicted = predict_under_meter(fitted, requests + [asked.request for asked in transfer])
    val, test, *others = predicted.scores
    val_scores = checked_scores(val, len(selection), data.n_classes, "validation")
    test_scores = checked_scores(test, len(data.test), data.n_classes, "test")
    transferred = [
        (asked, checked_scores(scores, len(asked.images), data.n_classes, asked.split), seconds)
        for asked, scores, seconds in zip(transfer, others, predicted.seconds[2:])
    ]
    vlm_info = getattr(vlm, "info", None)
    disclosed = supervision(cls, spec.hparams, vlm_info)
    method = MethodOutput({**fitted.budget_report, **gpu}, fitted.touched, fitted.log, fitted.weights, disclosed)
    own_s = sum(predicted.seconds[:2])
    return outcome(spec, data, method, val_scores, test_scores, vlm_info, own_s, transferred)


@dataclass
class MethodOutput:
    """What a fitted method reports besides its scores, from this process or from a sealed child."""

    fit_report: dict[str, Any]
    touched: set[str]
    log: RunLog
    weights: dict[str, Any]
    supervision: dict[str, Any]


def outcome(
    spec: RunSpec,
    data: TaskData,
    method: MethodOutput,
    val_scores: np.ndarray,
    test_scores: np.ndarray,
    vlm_info: dict[str, Any] | None,
    predict_s: float,
    transferred: list[tuple[TransferInput, np.ndarray, float]] = (),
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Checked scores into the ok record's fields (metrics, intervals, diagnostics, what the method did, transfer
    evaluations) and the prediction arrays, for a run predicted in this process or in a sealed child alike.

    `predict_s` is the time predicting the selection and test images took; `transferred` holds each transfer
    dataset's input, its checked scores and the time predicting them took."""
    started = time.perf_counter()
    selection = selection_split(data)
    val_report = evaluate(val_scores, selection.y, selection.a, data)
    test_report = evaluate(test_scores, data.test.y, data.test.a, data)
    intervals = None
    if spec.bootstrap:
        y_hat = test_scores.argmax(1)
        intervals = bootstrap_intervals(
            data.test.y, y_hat, data.test.a, data.n_groups, data.n_classes, n_resamples=spec.bootstrap, seed=spec.seed
        )
    eval_time_s = round(predict_s + time.perf_counter() - started, 3)  # of the run's own splits
    transfer, transfer_arrays = {}, {}
    for asked, scores, seconds in transferred:  # each records its own evaluation time
        result, more = score_transfer(asked, scores, seconds, data, test_scores, spec)
        transfer[result.dataset] = result
        transfer_arrays.update(more)
    log = method.log
    fields = {
        "metrics": {"val": val_report.summary, "test": test_report.summary},
        "test_intervals": intervals,
        "per_group": {"val": val_report.to_dict(), "test": test_report.to_dict()},
        "metric_definitions": METRIC_DEFINITIONS,
        "budget_report": {**method.fit_report, "eval_time_s": eval_time_s},
        "labels_used": method.supervision["summary"],
        "supervision": method.supervision,
        "labels_touched": sorted(method.touched),
        "variant": log.variant,
        "stages": log.stages,
        "diagnostics": diagnose(log.evidence, data),
        "history": log.history,
        "weights": method.weights,
        "vlm": vlm_info,
        "transfer": transfer or None,
        "tiny_groups": scored_cells_below_minimum(data) or None,
    }
    arrays = {
        "test_scores": test_scores.astype(np.float32),
        "test_y": data.test.y,
        "test_a": data.test.a,
        "test_ids": data.test.ids.astype(str),
        "val_scores": val_scores.astype(np.float32),
        "val_ids": selection.ids.astype(str),
        **transfer_arrays,
    }
    return fields, arrays


def scored_cells_below_minimum(data: TaskData) -> dict[str, dict[str, int]]:
    """The (target class|group) cells of validation (both parts) and test below the minimum (data.tiny_cells)."""
    parts = [data.val] + ([data.val_select] if data.val_select is not None else [])
    val_y, val_a = np.concatenate([p.y for p in parts]), np.concatenate([p.a for p in parts])
    cells = {
        "val": cell_counts(val_y, val_a, data.target_classes, data.group_names),
        "test": cell_counts(data.test.y, data.test.a, data.target_classes, data.group_names),
    }
    return tiny_cells(cells)


def supervision(cls: type, hparams: dict[str, Any], vlm_info: dict[str, Any] | None) -> dict[str, Any]:
    """Every label source a method reads: its declared labels, a VLM's label-derived captions (from the encoder's
    `info`), the test images."""
    use = cls.label_use(hparams)
    captions = ((vlm_info or {}).get("report") or {}).get("captions_name")
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


def record_of(
    spec: RunSpec,
    reg: Registry,
    data: TaskData | None,
    status: str,
    wall_time_s: float | None,
    config: Any,
    started_at: str | None = None,
    **fields,
) -> RunRecord:
    """A run's record: its spec and provenance (method and its code, task, dataset, versions, commit, host, start and
    end time) with `fields` (among them `isolation`: where the method ran)."""
    cls = reg.methods.get(spec.method)
    return RunRecord(
        run_id=spec.run_id,
        comparison_id=spec.comparison_id,
        spec=spec,
        method_info=MethodInfo(
            name=spec.method,
            description=getattr(cls, "description", ""),
            citation=getattr(cls, "citation", ""),
            requires=cls.requirements() if cls else "",
            ablation_of=getattr(cls, "ablation_of", None),
        ),
        method_code=method_code(cls, reg.provider("method", spec.method)) if cls else None,
        task_info=None
        if data is None
        else TaskInfo(
            target=data.task.target,
            sensitive=list(data.task.sensitive),
            target_classes=list(data.target_classes),
            group_names=list(data.group_names),
            sizes={"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        ),
        dataset_info=None if data is None else dataset_info(data),
        versions=package_versions(),
        git_commit=git_commit(),
        host=host_info(),
        status=status,
        wall_time_s=wall_time_s,
        started_at=started_at,
        ended_at=utc_now(),
        config=config,
        **fields,
    )


def dataset_info(data: TaskData) -> dict[str, Any]:
    """What a record says about its data: the loader's info and, for a run with an unlabeled pool, the pool's name,
    images and report (what was dropped and why), long listings cut (`record.listings_cut`; a mapping longer than
    the limit, e.g. a folder pool's duplicate -> first copy, is listed as (key, value) pairs and cut like a list)."""
    if data.pool is None:
        return listings_cut(data.info)
    report = {
        key: [list(pair) for pair in sorted(value.items())]
        if isinstance(value, dict) and len(value) > LISTING_LIMIT
        else value
        for key, value in data.pool.report.items()
    }
    return listings_cut({**data.info, "pool": {"name": data.pool.name, "images": len(data.pool), **report}})


class RemoteFailure(RuntimeError):
    """A run that failed in another process (a sealed child), with that process's error line and traceback."""

    def __init__(self, error: str, remote_traceback: str):
        super().__init__(error)
        self.error, self.remote_traceback = error, remote_traceback


def error_line(exc: BaseException) -> str:
    """The one-line error of a failed run."""
    if isinstance(exc, RemoteFailure):
        return exc.error
    if isinstance(exc, SystemExit):
        return f"SystemExit: the method called sys.exit({exc.code!r}); a method must raise an exception instead"
    return f"{type(exc).__name__}: {exc}"


def loads_vlm(spec: RunSpec, reg: Any) -> bool:
    """Whether a run loads its comparison's VLM: its method needs one and the comparison has one."""
    return reg.method(spec.method).needs_vlm and spec.vlm != "none"


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
        transfer: TransferPlan | None = None,
    ):
        self.device, self.config, self.progress, self.reg = device, config, progress, reg
        self.transfer = transfer or TransferPlan()
        self.cache_dir = Path(cache_dir or default_cache_dir())
        self.ray_shards = False  # embed VLM inputs of more than one shard as Ray tasks (see sharding_on_ray)
        self._loader: DataLoaderCache | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_loader": None}

    def sharding_on_ray(self) -> "SpecRunner":
        """A copy whose runs embed large image arrays (a pool) as Ray tasks: for runs that execute on a Ray cluster."""
        copy = SpecRunner(self.device, self.cache_dir, self.config, self.progress, self.reg, self.transfer)
        copy.ray_shards = True
        return copy

    @property
    def loader(self) -> DataLoaderCache:
        if self._loader is None:
            self._loader = DataLoaderCache(self.cache_dir, self.reg or registry())
        return self._loader

    def __call__(self, spec: RunSpec) -> tuple[RunRecord, dict | None]:
        """Run one spec; any exception becomes a failed record with its traceback."""
        reg = self.loader.reg
        started, started_at = time.perf_counter(), utc_now()
        data = None
        with compute_threads(spec.threads):
            try:
                device = resolve_device(self.device)
                cls = reg.method(spec.method)
                progress_stage("loading data")
                data = self.loader.task_data(spec, with_pool=cls.needs_pool)
                at_inference = cls.label_use(spec.hparams).sensitive_at_inference
                transfer = [
                    transfer_input(t, self.transfer_test(t, spec.resolution), at_inference, spec.method)
                    for t in self.transfer.for_spec(spec)
                ]
                vlm = self.loader.vlm(spec.vlm, device) if cls.needs_vlm else None
                fields, arrays = self.fit_and_score(spec, data, device, reg, vlm, transfer)
                status = "ok"
            # sys.exit() in a method fails its run like an exception (os._exit needs --workers > 1: README, Faults).
            except (Exception, SystemExit) as exc:  # recorded with its traceback; the grid continues
                where = exc.remote_traceback if isinstance(exc, RemoteFailure) else traceback.format_exc()
                fields = {"error": portable(error_line(exc)), "traceback": portable(where)}
                arrays, status = None, "failed"
                log.error("run %s failed: %s", spec.label, fields["error"])
            wall = round(time.perf_counter() - started, 3)
            isolation = self.isolation(spec)
            # scored and described under the run's thread limit: the record's host states the threads it ran with
            record = record_of(spec, reg, data, status, wall, self.config, started_at, isolation=isolation, **fields)
        return record, arrays

    def transfer_test(self, target: TransferTarget, resolution: int) -> Split:
        """The test split of a transfer dataset at the run's resolution (loaded before the fit, so bad data fails
        the run before it trains)."""
        root = Path(target.root) if target.root else None
        ds = self.loader.dataset(target.pairing.dataset, root, resolution, target.options, target.pairing.loaded_task)
        return ds.splits["test"]

    def fit_and_score(
        self,
        spec: RunSpec,
        data: TaskData,
        device: torch.device,
        reg: Registry,
        vlm: Any,
        transfer: list[TransferInput],
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Fit and score one loaded run in this process: the plugin is trusted (`sealed.SealedRunner` is not)."""
        shards = RayShards(threads=spec.threads) if self.ray_shards else None
        return run_one(spec, data, device, reg, self.progress, vlm, shards, transfer)

    def isolation(self, spec: RunSpec) -> Isolation:
        """Where the method of `spec` fits and predicts (the record's `isolation`): here, in this process."""
        return Isolation("in-process")

    def prepare_vlm(self, value: str) -> None:
        """Load (and, when its cache is empty, build) the VLM `value` once, before the runs that use it start."""
        self.loader.vlm(value, "cpu")

    def crashed(self, spec: RunSpec, error: str) -> RunRecord:
        """The record of a run whose process died before it could write one."""
        return record_of(
            spec, self.loader.reg, None, "failed", None, self.config, isolation=self.isolation(spec), error=error
        )

    def is_heavy(self, spec: RunSpec) -> bool:
        """Runs that read a pool or a VLM do the most work per step: executors start them first."""
        return self.loader.reg.heavy(spec.method)

    def needs_vlm(self, spec: RunSpec) -> bool:
        """Whether the run loads its comparison's VLM (executors prepare it once, before such runs)."""
        return loads_vlm(spec, self.loader.reg)
