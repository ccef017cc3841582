"""Harness speed: ERM steps/s through the fit context versus a plain PyTorch loop, and with the measured layout
versus the default one.

Same cached uint8 images, same MobileNetV2, batch size, optimizer and
schedule; augmentation off in both so only the harness machinery differs
(sampler, budget meter, batch assembly, NaN check).  The two loops are
interleaved, the order swapped every round, until the spread of the ratios is
small (verdicts.interleaved); the median ratio is the verdict (target >= 0.95).
The layout verdict runs the harness twice, once with speed.CPU_LAYOUT's channels-last
MobileNetV2 and once in the default layout, weights and inputs (target >= 1.3).  The harness before
issue 24 already computed channels-last without choosing it: its NHWC images reach the network as a
channels-last-strided permute, and a CPU convolution follows its input's layout; the harness now sets
the layout of both explicitly (FeatureExtractor.input_layout), so the table decides.
"""

import time

import pytest
import torch
from verdicts import interleaved

from fairfacebench import speed
from fairfacebench.backbones import create_backbone
from fairfacebench.budget import Budget, BudgetMeter
from fairfacebench.context import FitContext, FitSettings
from fairfacebench.data import make_task_data
from fairfacebench.datasets.synthfaces import SynthFaces
from fairfacebench.methods.common import cross_entropy
from fairfacebench.settings import NO_AUGMENT
from fairfacebench.training import Classifier, normalize, to_tensor

STEPS, BATCH, SIZE = 15, 64, 64


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, a default-grid worker's share (and robust to other processes' load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def task():
    plugin = SynthFaces()
    ds = plugin.load(None, SIZE, None, n_train=2000, n_val=200, n_test=200)
    return make_task_data(ds, plugin.tasks[0])


def harness_steps(task, layout: str | None = None) -> float:
    """Steps per second of the fit context's loop; `layout` overrides the measured table for MobileNetV2 (weights
    and inputs)."""
    table = dict(speed.CPU_LAYOUT)
    if layout is not None:
        speed.CPU_LAYOUT[("mobilenet_v2", "fp32")] = layout
    try:
        return _harness_steps(task)
    finally:
        speed.CPU_LAYOUT.clear()
        speed.CPU_LAYOUT.update(table)


def _harness_steps(task) -> float:
    budget = Budget("bench", steps=STEPS, batch_size=BATCH)
    settings = FitSettings({"lr": 1e-3, "weight_decay": 1e-4}, 0, budget, augment=NO_AUGMENT)
    ctx = FitContext(task, settings, BudgetMeter(budget))
    model = ctx.new_classifier()
    start = time.perf_counter()
    ctx.train_classifier(model, STEPS, lambda m, b: cross_entropy(m(b.x), b).mean())
    return STEPS / (time.perf_counter() - start)


def plain_steps(task) -> float:
    backbone, _ = create_backbone("mobilenet_v2", "imagenet")
    # The same memory layout as ctx.new_classifier(), so the ratio measures the harness and not the layout.
    model = Classifier(backbone, backbone.out_dim, {"target": 2}).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=STEPS, pct_start=0.25)
    images, y = task.train.images, torch.as_tensor(task.train.y)
    g = torch.Generator().manual_seed(0)
    model.train()
    start = time.perf_counter()
    for _ in range(STEPS):
        idx = torch.randint(0, len(images), (BATCH,), generator=g).numpy()
        loss = torch.nn.functional.cross_entropy(model(normalize(to_tensor(images[idx], torch.device("cpu")))), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return STEPS / (time.perf_counter() - start)


def test_harness_overhead(benchmark, verdict, task):
    rounds = benchmark.pedantic(
        lambda: interleaved(lambda: harness_steps(task), lambda: plain_steps(task), max_rounds=11, max_spread=0.05),
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update(
        harness_steps_per_s=max(rounds.numerators),
        plain_steps_per_s=max(rounds.denominators),
        ratio_median=rounds.median,
        ratios=[round(r, 3) for r in rounds.ratios],
    )
    verdict(rounds.verdict("harness/plain steps per second", 0.95, note=f"{STEPS} ERM steps of {BATCH} at {SIZE} px"))


def test_the_measured_layout_against_the_default_one(benchmark, verdict, task):
    rounds = benchmark.pedantic(
        lambda: interleaved(
            lambda: harness_steps(task), lambda: harness_steps(task, "contiguous"), max_rounds=11, max_spread=0.05
        ),
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update(ratio_median=rounds.median, ratios=[round(r, 3) for r in rounds.ratios])
    verdict(
        rounds.verdict(
            "harness channels-last/default layout steps per second",
            1.3,
            note=f"MobileNetV2, {STEPS} ERM steps of {BATCH} at {SIZE} px, 1 thread",
        )
    )
