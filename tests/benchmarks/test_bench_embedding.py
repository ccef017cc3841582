"""Embedding on this CPU: the streaming paths against a bare model forward, and the memory of embedding a pool.

Run with ``pytest tests/benchmarks/test_bench_embedding.py --benchmark-only -p no:cacheprovider``.
Throughput does not depend on the weights, so models are built untrained (no cache, no download); inputs are
uint8 images at the default budget's 48 px; one torch thread, a default-grid worker's share.

- overhead: `ClipModelEncoder.encode_images` (the mini-CLIP image tower) and `predict_features` (the
  comparison's backbone) against the model's own preprocessing and forward, interleaved rounds;
- pool memory: a spawned process embeds a memmapped pool of ``FAIRBENCH_BENCH_POOL`` images (default
  20,000; the issue's number is 100,000) through `sharding.embed_in_shards` (the path of every VLM
  embedding) with the embedding cache on;
  a thread samples its anonymous RSS (file pages of the memmap are the page cache's, not the process's).
"""

import multiprocessing
import os
import threading
import time

import numpy as np
import pytest
import torch
from verdicts import Verdict, interleaved, seconds

from fairfacebench.backbones import create_backbone
from fairfacebench.datasets.synthfaces.mini_clip import MiniClipConfig, build_model, tokenizer
from fairfacebench.sharding import SHARD, embed_in_shards
from fairfacebench.training import Classifier, normalize, predict_features, to_tensor
from fairfacebench.vlm import ClipModelEncoder

N_IMAGES = 512
SIZE = 48
POOL = int(os.environ.get("FAIRBENCH_BENCH_POOL", 20_000))
# Anonymous memory embedding may add on top of the loaded model: one shard of images and activations.
POOL_RSS_TARGET_MB = 512


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (N_IMAGES, SIZE, SIZE, 3), dtype=np.uint8)


def test_mini_clip_encode_images_overhead(benchmark, verdict, images):
    cfg = MiniClipConfig()
    encoder = ClipModelEncoder("mini-clip", build_model(cfg), tokenizer(cfg), {"id": "throughput"}, cache_dir=None)

    def bare() -> None:
        """The model's own work: preprocessing (resize, normalise) and the image tower, batch by batch."""
        with torch.no_grad():
            for s in range(0, N_IMAGES, encoder.batch_size):
                encoder.model.encode_image(encoder.images_to_input(images[s : s + encoder.batch_size]), normalize=True)

    rounds = benchmark.pedantic(
        lambda: interleaved(
            lambda: seconds(bare), lambda: seconds(lambda: encoder.encode_images(images)), max_rounds=9, max_spread=0.1
        ),
        rounds=1,
        iterations=1,
    )
    per_s = N_IMAGES / float(np.median(rounds.denominators))
    benchmark.extra_info.update(images=N_IMAGES, input_px=SIZE, model_px=cfg.image_size, images_per_s=round(per_s))
    verdict(
        rounds.verdict(
            "embed/mini-clip encode_images vs bare forward",
            0.9,
            note=f"{per_s:.0f} images/s, both resize {SIZE}->{cfg.image_size} px",
        )
    )


def test_backbone_predict_features_overhead(benchmark, verdict, images):
    backbone, _ = create_backbone("mobilenet_v2", "none")
    model = Classifier(backbone, backbone.out_dim, {"target": 2}).to(memory_format=torch.channels_last).eval()
    cpu = torch.device("cpu")
    batches = [normalize(to_tensor(images[s : s + 256], cpu)) for s in range(0, N_IMAGES, 256)]

    def bare() -> None:
        with torch.no_grad():
            for x in batches:
                model.features(x)

    rounds = benchmark.pedantic(
        lambda: interleaved(
            lambda: seconds(bare),
            lambda: seconds(lambda: predict_features(model, images, cpu)),
            max_rounds=9,
            max_spread=0.1,
        ),
        rounds=1,
        iterations=1,
    )
    per_s = N_IMAGES / float(np.median(rounds.denominators))
    benchmark.extra_info.update(images=N_IMAGES, input_px=SIZE, images_per_s=round(per_s))
    verdict(rounds.verdict("embed/backbone predict_features vs bare forward", 0.9, note=f"{per_s:.0f} images/s"))


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def _embed_pool(path: str, cache_dir: str, results) -> None:
    """In a fresh process: load the mini-CLIP, then embed the memmapped pool while sampling anonymous RSS."""
    torch.set_num_threads(1)
    pool = np.load(path, mmap_mode="r")
    cfg = MiniClipConfig()
    encoder = ClipModelEncoder("mini-clip", build_model(cfg), tokenizer(cfg), {"id": "pool-memory"}, cache_dir)
    encoder.encode_images(pool[:256])  # warm the allocator and the model before the baseline
    baseline = _rss_kb("RssAnon")
    peak, stop = [baseline], threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], _rss_kb("RssAnon"))

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    emb = embed_in_shards(encoder.encode_images, pool, SHARD)
    took = time.perf_counter() - started
    stop.set()
    sampler.join()
    results.put(
        {
            "images": len(emb),
            "dim": int(emb.shape[1]),
            "seconds": round(took, 1),
            "baseline_anon_mb": round(baseline / 1024, 1),
            "peak_anon_mb": round(max(peak[0], _rss_kb("RssAnon")) / 1024, 1),
            "peak_rss_total_mb": round(_rss_kb("VmHWM") / 1024, 1),
        }
    )


def test_pool_embedding_memory_is_bounded(benchmark, verdict, tmp_path):
    path = tmp_path / "pool.npy"
    pool = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(POOL, SIZE, SIZE, 3))
    rng = np.random.default_rng(0)
    for start in range(0, POOL, 10_000):
        pool[start : start + 10_000] = rng.integers(0, 256, pool[start : start + 10_000].shape, dtype=np.uint8)
    pool.flush()
    del pool
    context = multiprocessing.get_context("spawn")
    results = context.Queue()

    def run() -> dict:
        child = context.Process(target=_embed_pool, args=(str(path), str(tmp_path / "cache"), results))
        child.start()
        outcome = results.get(timeout=3600)
        child.join()
        return outcome

    outcome = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(outcome, pool_file_mb=round(path.stat().st_size / 2**20, 1))
    assert outcome["images"] == POOL
    grown = outcome["peak_anon_mb"] - outcome["baseline_anon_mb"]
    verdict(
        Verdict(
            f"embed/pool of {POOL:,} images: anonymous memory added",
            grown,
            POOL_RSS_TARGET_MB,
            "<=",
            " MB",
            note=f"pool file {path.stat().st_size / 2**20:.0f} MB, peak RSS incl. file pages "
            f"{outcome['peak_rss_total_mb']:.0f} MB, {POOL / outcome['seconds']:.0f} images/s",
        )
    )
