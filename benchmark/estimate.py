"""What a training step costs on this machine (measured once per CPU and cached) and the wall-time estimate of a plan
that `fairbench run --dry-run` prints.

A run costs its steps times this machine's measured cost of one training step of the backbone (at the run's
resolution, batch size, precision and threads) times its method's cost relative to ERM, plus its evaluation
(validation and test images through the network) and a fixed start-up; encoders that must be trained first (the
mini-CLIP on an empty cache) are jobs of their own; jobs are then packed on the workers the way the executor starts
them (heaviest first).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from fairfacebench.backbones import create_backbone
from fairfacebench.provenance import cpu_info, hardware_of
from fairfacebench.spec import canonical_json
from fairfacebench.speed import autocast, memory_format, precision
from fairfacebench.training import Classifier

# A method's cost per optimizer step relative to ERM's at the same budget (wall time per step, all stages and its
# own inference passes included), measured on this 2-core machine with 2 workers.  A method's fixed stages
# (clustering, thresholds, embedding its training set) weigh more in a short budget, so the ratios depend on it:
# `default` from a fresh clone's `make bench` (synthfaces, 70 steps, 2026-12-04), every other budget from the
# committed synthfaces-small store (400 steps).  A store's own records of a method replace its entry; a method that
# is in neither counts as ERM, and the estimate says so.
METHOD_COST_SMALL: dict[str, float] = {
    "erm": 1.0,
    "reweight": 1.02,
    "resample": 0.97,
    "undersample": 1.01,
    "groupdro": 1.06,
    "domain-independent": 1.09,
    "adversarial": 1.13,
    "threshold-optimizer": 1.03,
    "val-reweight": 1.12,
    "val-reweight:uniform-weights": 1.01,
    "jtt": 1.05,
    "fscl": 1.51,
    "simclr": 1.48,
    "shasam": 0.71,
    "shasam:no-mining": 0.69,
    "clip-cluster": 1.14,
    "clip-cluster:no-resampling": 1.04,
    "ssl-pipeline": 2.06,
    "ssl-pipeline:no-curation": 2.06,
    "ssl-pipeline:no-meta-weights": 1.39,
}
METHOD_COST: dict[str, dict[str, float]] = {
    "default": {
        **METHOD_COST_SMALL,
        "adversarial": 1.04,
        "bcbb": 2.02,
        "clip-cluster": 1.98,
        "domain-independent": 1.03,
        "fscl": 1.26,
        "groupdro": 0.91,
        "jtt": 1.23,
        "resample": 0.94,
        "reweight": 1.01,
        "shasam": 0.84,
        "simclr": 1.59,
        "ssl-pipeline": 2.93,
        "threshold-optimizer": 1.47,
        "undersample": 1.04,
        "val-reweight": 1.10,
    },
}
RUN_START_S = 6.0  # a worker's start, data loading from the decoded-image cache and writing the record
CALIBRATION_STEPS = 5  # timed steps per calibration, after two warm-up steps


@dataclass(frozen=True)
class StepCost:
    """Seconds of one training step (forward, backward, AdamW) and of one image through the network in inference."""

    train_step_s: float
    infer_image_s: float
    measured: str  # when and where: the CPU model, torch version, threads


def machine_key() -> str:
    info = cpu_info()
    text = f"{info['cpu_model']}|{info['torch_cpu_capability']}|{torch.__version__}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def step_cost(
    backbone: str, resolution: int, batch_size: int, precision_name: str, threads: int, cache_dir: Path
) -> StepCost:
    """The measured cost of a step on this machine, from the cache or measured now (a few seconds, once)."""
    key = f"{backbone}-{resolution}px-b{batch_size}-{precision_name}-t{threads}"
    path = Path(cache_dir) / "calibration" / f"{machine_key()}.json"
    known = json.loads(path.read_text()) if path.is_file() else {}
    if key not in known:
        known[key] = measure_step(backbone, resolution, batch_size, precision_name, threads).__dict__
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, path)
    return StepCost(**known[key])


def measure_step(
    backbone: str,
    resolution: int,
    batch_size: int,
    precision_name: str,
    threads: int,
    layout: torch.memory_format | None = None,
) -> StepCost:
    """Median time of CALIBRATION_STEPS training steps of the backbone (random weights: the cost is the same) and of
    inference over two batches, with `threads` torch threads, in the measured layout (or `layout`)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        net, _ = create_backbone(backbone, "none")
        layout = layout or memory_format(backbone, precision_name, "cpu")
        model = Classifier(net, net.out_dim, {"target": 2}).to(memory_format=layout)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x = torch.rand(batch_size, 3, resolution, resolution).to(memory_format=layout)
        y = torch.randint(0, 2, (batch_size,))
        times = []
        for i in range(CALIBRATION_STEPS + 2):
            start = time.perf_counter()
            with autocast(precision_name, "cpu"):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i >= 2:
                times.append(time.perf_counter() - start)
        model.eval()
        batch = torch.rand(256, 3, resolution, resolution).to(memory_format=layout)
        with torch.inference_mode(), autocast(precision_name, "cpu"):
            model(batch)
            start = time.perf_counter()
            model(batch)
            infer = (time.perf_counter() - start) / 256
    finally:
        torch.set_num_threads(before)
    measured = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} on {cpu_info()['cpu_model']}, torch {torch.__version__}"
    return StepCost(round(statistics.median(times), 5), round(infer, 7), measured)


# ---------------------------------------------------------------- the estimate of a plan


@dataclass
class Estimate:
    """A plan's expected wall time on this machine: per run, and packed on the workers."""

    seconds: dict[str, float]  # run id -> estimated wall seconds of the run
    wall_s: float
    workers: int
    notes: list[str] = field(default_factory=list)
    preparing: dict[str, float] = field(default_factory=dict)  # encoder -> seconds of its training, before its runs


def train_seconds_per_step(record: Any) -> float | None:
    """A finished run's training wall time (all its stages) per optimizer step, or None when it has none."""
    report = record.budget_report or {}
    train = sum((report.get("wall_time_per_stage_s") or {}).values()) or report.get("wall_time_s")
    return train / report["steps"] if record.ok and train and report.get("steps") else None


def on_this_machine(records: Iterable[Any]) -> list[Any]:
    """The records computed on this machine's CPU model and instruction set (as the leaderboard names hardware)."""
    here = hardware_of(cpu_info())
    return [r for r in records if r.host and hardware_of(r.host) == here]


def configuration(spec: Any) -> tuple[str, str]:
    """A run's method and hyperparameters: what its cost per step depends on besides the step setting (a search
    trial may cost several times its method's defaults, e.g. ssl-pipeline's `meta_scope` "all"), the same on every
    task and seed."""
    return spec.method, canonical_json(spec.hparams)


def method_costs(records: Iterable[Any], key: Callable[[Any], Any] = lambda spec: spec.method) -> dict[Any, float]:
    """Each method's (or with `key=configuration`, each configuration's) wall time per optimizer step relative to
    ERM's, from ok records that share ERM's comparison (same machine and budget): the median over its runs."""
    per_step: dict[tuple[str, Any], list[float]] = {}
    erm: dict[str, list[float]] = {}
    for r in records:
        if (seconds := train_seconds_per_step(r)) is not None:
            per_step.setdefault((r.comparison_id, key(r.spec)), []).append(seconds)
            if r.method == "erm":
                erm.setdefault(r.comparison_id, []).append(seconds)
    ratios: dict[Any, list[float]] = {}
    for (comparison, what), values in per_step.items():
        if comparison in erm:
            ratios.setdefault(what, []).append(statistics.median(values) / statistics.median(erm[comparison]))
    return {what: round(statistics.median(v), 3) for what, v in ratios.items()}


def estimate(
    specs: list[Any],
    costs: dict[str, float],
    step: StepCost,
    eval_images: int,
    workers: int,
    configured: dict[tuple[str, str], float] | None = None,
) -> Estimate:
    """The wall time of computing `specs` on `workers` workers: each run's steps x the step cost x its cost (its
    configuration's in `configured`, measured on a finished run of the same method and hyperparameters, else its
    method's), plus its evaluation and start-up; runs are started heaviest first, each on the worker free first."""
    configured = configured or {}
    notes = sorted({f"no measured cost for '{s.method}': counted as erm" for s in specs if s.method not in costs})
    seconds = {
        s.run_id: s.budget.steps * step.train_step_s * configured.get(configuration(s), costs.get(s.method, 1.0))
        + eval_images * step.infer_image_s
        + RUN_START_S
        for s in specs
    }
    return Estimate(seconds, packed(seconds.values(), workers), workers, notes)


@dataclass(frozen=True)
class Preparation:
    """What an encoder trains before the runs that use it when its cache is empty (an encoder plugin's
    `preparation`): `steps` training steps of `backbone` at `resolution` and `batch_size`, plus `fixed_s` seconds of
    the rest (data, reports, start), measured on this project's reference machine."""

    name: str
    backbone: str
    resolution: int
    batch_size: int
    steps: int
    fixed_s: float


def plan_estimate(
    todo: list[Any],
    workers: int,
    cache_dir: Path,
    records: list[Any],
    split_sizes: Callable[[Any], dict[str, int] | None] = lambda spec: None,
    preparations: Iterable[Preparation] = (),
) -> Estimate:
    """The estimate of the runs a plan will compute: this machine's step cost per setting (measured once, cached),
    method costs from the store's records over the measured table of the budget, evaluation sizes from records of
    the same data (else from the dataset plugin, `split_sizes`), and the encoders to prepare first."""
    here = on_this_machine(records)
    measured = {**method_costs(records), **method_costs(here)}  # this machine's ratios where it has them
    configured = {**method_costs(records, configuration), **method_costs(here, configuration)}
    sizes = {r.spec.data_fingerprint: r.task_info.sizes for r in records if r.task_info is not None}
    seconds: dict[str, float] = {}
    notes: list[str] = []
    groups: dict[tuple, list[Any]] = {}
    for s in todo:
        groups.setdefault((*step_setting(s), s.data_fingerprint), []).append(s)
    for (backbone, resolution, batch, prec, threads, fingerprint), specs in groups.items():
        step = step_cost(backbone, resolution, batch, prec, threads, cache_dir)
        if observed := observed_erm_step(here, (backbone, resolution, batch, prec, threads)):
            seconds_per_step, runs = observed
            notes.append(
                f"step cost of {backbone} at {resolution} px, batch {batch}, {prec}, {threads} thread(s): "
                f"{seconds_per_step:.3f} s, the median of erm's {runs} run(s) on this machine in the store "
                f"(calibration {step.train_step_s:.3f} s, measured {step.measured})"
            )
            step = StepCost(seconds_per_step, step.infer_image_s, f"erm's {runs} run(s) in the store")
        split = sizes.get(fingerprint) or split_sizes(specs[0])
        eval_images = (split["val"] + split["test"]) if split else 0
        if not split:
            notes.append(
                f"evaluation not counted for data {fingerprint[:8]} (no finished run of it in the store yet, and its "
                "dataset does not tell its split sizes before loading)"
            )
        for budget in sorted({s.budget.name for s in specs}):
            costs = {**METHOD_COST.get(budget, METHOD_COST_SMALL), **measured}
            todo_here = [s for s in specs if s.budget.name == budget]
            part = estimate(todo_here, costs, step, eval_images, workers, configured)
            seconds.update(part.seconds)
            notes += part.notes
    if seen := sum(configuration(s) in configured for s in todo):
        notes.append(f"{seen} run(s) at the cost of a finished run of the same method and hyperparameters")
    threads = max((s.threads for s in todo), default=1)
    preparing = {}
    for prep in preparations:
        step = step_cost(prep.backbone, prep.resolution, prep.batch_size, "fp32", threads, cache_dir)
        preparing[prep.name] = prep.steps * step.train_step_s + prep.fixed_s
    wall = packed([*seconds.values(), *preparing.values()], workers)
    return Estimate(seconds, wall, workers, sorted(set(notes)), preparing)


def step_setting(spec: Any) -> tuple:
    """What a training step's cost depends on: backbone, resolution, batch size, precision and threads."""
    return spec.backbone, spec.resolution, spec.budget.batch_size, precision(spec.budget, "cpu"), spec.threads


def observed_erm_step(records: Iterable[Any], setting: tuple) -> tuple[float, int] | None:
    """The median training seconds per step of erm's finished runs at `setting` (backbone, resolution, batch,
    precision, threads) among `records`, and how many runs: what a step of the grid really costs, the workers'
    contention included, which a calibration on an idle process does not see. None when there is no such run."""
    seconds = [
        t
        for r in records
        if r.method == "erm" and step_setting(r.spec) == setting and (t := train_seconds_per_step(r)) is not None
    ]
    return (round(statistics.median(seconds), 5), len(seconds)) if seconds else None


def started_before(run_seconds: Iterable[float], workers: int, horizon_s: float) -> tuple[int, float]:
    """Runs launched in the order given, each on the worker free first, none once `horizon_s` seconds have passed
    (`--until`): how many start, and when the last of them ends (seconds from the start)."""
    free = [0.0] * max(1, workers)
    started = 0
    for run_time in run_seconds:
        worker = free.index(min(free))
        if free[worker] >= horizon_s:
            break
        free[worker] += run_time
        started += 1
    return started, max(free)


def packed(run_seconds: Iterable[float], workers: int) -> float:
    """Wall time of runs started heaviest first, each on the worker that is free first (as the executor does)."""
    free = [0.0] * max(1, workers)
    for run_time in sorted(run_seconds, reverse=True):
        free[free.index(min(free))] += run_time
    return max(free)
