"""Decoded-image cache on the real UTKFace folder (23,702 images) at 64 px.

Run with ``FAIRBENCH_UTKFACE_ROOT=../shared/data/utkface/UTKFace pytest tests/benchmarks/test_bench_cache.py
--benchmark-only -p no:cacheprovider``; add ``--benchmark-json out.json`` to keep the extra numbers
(images/s, peak RSS, traced peak) that each test stores in ``extra_info``.

- build: decode + resize everything into a fresh cache with 1 and 2 workers, in a spawned
  process; its RSS (and that of its forkserver and decoding workers) is sampled from /proc
  every 50 ms (``ru_maxrss`` would include the pytest process it was forked from), and
  tracemalloc gives the traced Python/numpy peak of the builder;
- input pipeline, one torch thread (a default-grid worker's share): random batches of 128 gathered
  from the cache memmap as float tensors (`to_tensor`), target 20,000 images/s; the whole training
  input path (plus the default flip/crop/jitter `augment_batch` and `normalize`), target 5,000; and
  cached batches versus decoding the JPEGs with PIL for every batch.  All read warm files (page
  cache) after the builds.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from verdicts import Verdict, interleaved, relative_spread, seconds

from fairfacebench.datasets.cache import decode_image
from fairfacebench.datasets.utkface import UTKFace

SIZE = 64
BATCH = 128
BATCHES_PER_ROUND = 10
ROUNDS = 15
# A MobileNetV2 training step at 64 px consumes a few hundred images/s per core: input at 5,000 is a small share.
AUGMENTED_TARGET = 5_000
# Decoding all of UTKFace once should take under a minute.
BUILD_TARGET = 23_702 / 60


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def _descendants(pid: int) -> list[int]:
    """pid and all its descendants (the forkserver and the decoding workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [c for p in frontier for c in children.get(p, [])]
        tree += frontier
    return tree


def _sample_rss(peaks: dict[str, float], stop: threading.Event) -> None:
    """Every 50 ms: the builder's RSS and the whole process tree's RSS; keep the maxima."""
    me = os.getpid()
    while not stop.wait(0.05):
        rss = {}
        for pid in _descendants(me):
            try:
                rss[pid] = _rss_mb(pid)
            except (OSError, StopIteration):
                continue
        peaks["builder"] = max(peaks["builder"], rss.get(me, 0.0))
        peaks["tree"] = max(peaks["tree"], sum(rss.values()))


def _build_in_fresh_process(root: Path, cache_dir: Path, workers: int, results) -> None:
    before = _rss_mb(os.getpid())
    peaks, stop = {"builder": before, "tree": before}, threading.Event()
    sampler = threading.Thread(target=_sample_rss, args=(peaks, stop))
    sampler.start()
    tracemalloc.start()
    started = time.perf_counter()
    ds = UTKFace().load(root, SIZE, cache_dir, workers=workers, progress=False)
    seconds = time.perf_counter() - started
    _, traced_peak = tracemalloc.get_traced_memory()
    stop.set()
    sampler.join()
    images = ds.info["cache"]["images"]
    results.put(
        {
            "images": images,
            "seconds": round(seconds, 2),
            "images_per_s": round(images / seconds, 1),
            "rss_before_build_mb": round(before, 1),
            "peak_rss_builder_mb": round(peaks["builder"], 1),
            "peak_rss_process_tree_mb": round(peaks["tree"], 1),
            "traced_peak_mb": round(traced_peak / 2**20, 1),
            "cache_file_mb": round(images * SIZE * SIZE * 3 / 2**20, 1),
        }
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_cache_build_throughput(benchmark, verdict, utkface_root, tmp_path, workers):
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    runs = iter(range(100))

    def build_once() -> dict:
        cache_dir = tmp_path / f"run{next(runs)}"
        child = context.Process(target=_build_in_fresh_process, args=(utkface_root, cache_dir, workers, results))
        child.start()
        outcome = results.get(timeout=1200)
        child.join()
        return outcome

    outcome = benchmark.pedantic(build_once, rounds=1, iterations=1)
    benchmark.extra_info.update(outcome)
    assert outcome["images"] == 23_702
    verdict(
        Verdict(
            f"cache/build UTKFace at {SIZE} px, {workers} worker{'s' if workers > 1 else ''}",
            outcome["images_per_s"],
            BUILD_TARGET,
            unit=" images/s",
            note=f"{outcome['seconds']:.0f} s, peak RSS of the tree {outcome['peak_rss_process_tree_mb']:.0f} MB",
        )
    )


@pytest.fixture(scope="module")
def cached(utkface_root, tmp_path_factory):
    ds = UTKFace().load(utkface_root, SIZE, tmp_path_factory.mktemp("cache"), workers=2, progress=False)
    split = ds.splits["train"]
    return split.images, [utkface_root / f for f in split.ids]


def input_batch(images: np.ndarray, index: np.ndarray, gen: "torch.Generator | None") -> "torch.Tensor":  # noqa: F821
    """The fit context's input path per batch (FitContext.batch): gather, to_tensor, with `gen` augment, normalize."""
    import torch  # imported here so the spawned build processes stay free of torch's memory

    from fairfacebench.settings import Augment
    from fairfacebench.training import augment_batch, normalize, to_tensor

    x = to_tensor(images[index], torch.device("cpu"))
    return x if gen is None else normalize(augment_batch(x, Augment(), gen))


def _rounds_of_batches(images: np.ndarray, gen) -> list[float]:
    """images/s of ROUNDS rounds of BATCHES_PER_ROUND random batches (after one warm-up round)."""
    rng = np.random.default_rng(0)

    def images_per_s() -> float:
        started = time.perf_counter()
        for _ in range(BATCHES_PER_ROUND):
            input_batch(images, rng.choice(len(images), BATCH, replace=False), gen)
        return BATCH * BATCHES_PER_ROUND / (time.perf_counter() - started)

    images_per_s()
    return [images_per_s() for _ in range(ROUNDS)]


@pytest.mark.parametrize("augmented", [False, True], ids=["cached-batches", "augmented"])
def test_pipeline_from_cache(benchmark, verdict, cached, augmented):
    """Random batches of 128 from the cache memmap as float tensors; `augmented`: the whole training input path.

    One torch thread: what each of the default grid's two workers has (executors.threads_per_worker).
    """
    import torch

    images, _ = cached
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0) if augmented else None
        rates = benchmark.pedantic(_rounds_of_batches, args=(images, gen), rounds=1, iterations=1)
    finally:
        torch.set_num_threads(threads)
    benchmark.extra_info.update(images_per_s=round(float(np.median(rates))), torch_threads=1)
    what = "gather + to_tensor + flip/crop/jitter + normalize" if augmented else "gather + to_tensor"
    verdict(
        Verdict(
            f"cache/{'augmented training input' if augmented else 'cached batches'} at {SIZE} px",
            float(np.median(rates)),
            AUGMENTED_TARGET if augmented else 20_000,
            unit=" images/s",
            spread=relative_spread(rates),
            rounds=len(rates),
            rounds_are="rounds of 10 batches",
            note=f"{what}, 1 torch thread",
        )
    )


def test_pipeline_cache_vs_decoding_jpegs(benchmark, verdict, cached):
    """Batches of float tensors from the cache versus decoding the JPEGs with PIL for every batch, interleaved."""
    images, paths = cached
    rng = np.random.default_rng(0)

    def from_cache() -> float:
        return seconds(lambda: input_batch(images, rng.choice(len(images), BATCH, replace=False), None))

    def decoding() -> float:
        picked = rng.choice(len(paths), BATCH, replace=False)
        decoded = lambda: np.stack([decode_image(paths[i], SIZE) for i in picked])  # noqa: E731
        return seconds(lambda: input_batch(decoded(), np.arange(BATCH), None))

    rounds = benchmark.pedantic(lambda: interleaved(decoding, from_cache, max_spread=0.1), rounds=1, iterations=1)
    benchmark.extra_info.update(speedups=[round(r, 1) for r in rounds.ratios])
    verdict(rounds.verdict("cache/decoding JPEGs/cache batch time", 10, unit="x", note=f"batches of {BATCH}"))
