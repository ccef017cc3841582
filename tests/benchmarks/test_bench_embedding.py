"""Embedding throughput (images/s) on this CPU: the mini-CLIP image tower and the comparison's backbone.

Run with ``pytest tests/benchmarks/test_bench_embedding.py --benchmark-only -p no:cacheprovider -s``.
Throughput does not depend on the weights, so both models are built untrained
(no cache, no download); inputs are uint8 images at the default budget's 48 px.
"""

import numpy as np
import pytest
import torch

from fairfacebench.backbones import create_backbone
from fairfacebench.datasets.synthfaces.mini_clip import MiniClipConfig, build_model, tokenizer
from fairfacebench.encoders.openclip import OpenClipEncoder
from fairfacebench.training import Classifier, predict_features

N_IMAGES = 1024
SIZE = 48


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (N_IMAGES, SIZE, SIZE, 3), dtype=np.uint8)


def _report(benchmark, what: str) -> None:
    per_s = N_IMAGES / benchmark.stats.stats.median
    benchmark.extra_info.update(
        images=N_IMAGES, input_px=SIZE, images_per_s=round(per_s, 1), threads=torch.get_num_threads()
    )
    print(f"\n{what}: {per_s:.0f} images/s")


def test_mini_clip_image_tower_throughput(benchmark, images):
    cfg = MiniClipConfig()
    encoder = OpenClipEncoder("mini-clip", build_model(cfg), tokenizer(cfg), {"id": "throughput"}, cache_dir=None)
    emb = benchmark.pedantic(encoder.encode_images, args=(images,), rounds=5, iterations=1, warmup_rounds=1)
    assert emb.shape == (N_IMAGES, cfg.embed_dim)
    benchmark.extra_info["model_input_px"] = cfg.image_size
    _report(benchmark, f"mini-CLIP image tower ({cfg.trunk} at {cfg.image_size} px)")


def test_backbone_feature_throughput(benchmark, images):
    backbone, _ = create_backbone("mobilenet_v2", "none")
    model = Classifier(backbone, backbone.out_dim, {"target": 2})
    feats = benchmark.pedantic(
        predict_features, args=(model, images, torch.device("cpu")), rounds=5, iterations=1, warmup_rounds=1
    )
    assert feats.shape == (N_IMAGES, backbone.out_dim)
    _report(benchmark, f"backbone mobilenet_v2 at {SIZE} px")
