"""Pool embedding shards across Ray workers under --executor ray: same numbers as in one process, metered once."""

import os

import numpy as np
import open_clip
import pytest
import torch

from fairfacebench.budget import Budget, BudgetMeter
from fairfacebench.context import MeteredEncoder
from fairfacebench.runner import SpecRunner
from fairfacebench.sharding import RayShards, embed_in_shards
from fairfacebench.vlm import ClipModelEncoder

ray = pytest.importorskip("ray", reason="Ray is installed by `make setup` (extra 'ray')")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def tiny_encoder() -> ClipModelEncoder:
    torch.manual_seed(0)
    vision = open_clip.model.CLIPVisionCfg(image_size=32, layers=1, width=32, head_width=16, patch_size=8)
    text = open_clip.model.CLIPTextCfg(context_length=16, vocab_size=100, width=32, heads=2, layers=1)
    return ClipModelEncoder("tiny", open_clip.model.CLIP(16, vision, text), None, {"id": "tiny"}, None, batch_size=64)


def images(n: int) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_outside_a_ray_cluster_sharding_says_what_is_missing():
    assert not ray.is_initialized()  # runs before the module's cluster starts
    with pytest.raises(RuntimeError, match="--executor ray"):
        RayShards(shard=10).embed(tiny_encoder(), images(30))


def test_ray_shards_equal_the_local_embedding_and_run_in_other_processes(cluster):
    encoder, pool = tiny_encoder(), images(450)
    shards = RayShards(shard=100)
    emb = shards.embed(encoder, pool)
    np.testing.assert_allclose(emb, embed_in_shards(encoder.encode_images, pool, shard=100), atol=1e-5)
    assert shards.last["shards"] == 5 and shards.last["in_flight"] == 2
    assert 1 <= shards.last["processes"] <= 5


def test_the_encoder_a_method_gets_charges_each_image_once_and_logs_the_shards(cluster):
    meter = BudgetMeter(Budget("t", 1, 1), forward_limit=10_000)
    encoder, pool = tiny_encoder(), images(450)
    shards = RayShards(shard=100)
    metered = MeteredEncoder(encoder, meter, shards)
    emb = metered.encode_images(pool)
    assert emb.shape == (450, 16)
    assert meter.forward_samples == 450  # charged here, once, wherever the shards ran
    assert shards.report()["shards"] == 5 and shards.report()["executor"] == "ray"
    small = metered.encode_images(pool[:50])  # one shard or less: embedded here, no Ray task
    np.testing.assert_allclose(small, emb[:50], atol=1e-5)
    assert shards.report()["calls"] == 1 and meter.forward_samples == 500


def test_runs_sent_to_ray_shard_their_embedding_and_local_runs_do_not():
    runner = SpecRunner("cpu", cache_dir=os.devnull)
    assert runner.ray_shards is False
    on_ray = runner.sharding_on_ray()
    assert on_ray.ray_shards is True and runner.ray_shards is False  # a copy; the local runner is unchanged
    assert (on_ray.device, on_ray.cache_dir, on_ray.config) == (runner.device, runner.cache_dir, runner.config)
