"""Embedding a pool streams: shards from a memmap into one preallocated output, the same numbers as in one go."""

import tracemalloc

import numpy as np
import open_clip
import torch

from fairfacebench.sharding import embed_in_shards
from fairfacebench.vlm import ClipModelEncoder

DIM = 256


def fake_encode(images: np.ndarray) -> np.ndarray:
    """A deterministic stand-in embedding: per-image channel means spread over DIM columns."""
    means = images.reshape(len(images), images.shape[1] * images.shape[2], 3).mean(1, dtype=np.float64)
    return np.tile(means, (1, DIM // 3 + 1))[:, :DIM].astype(np.float32)


def test_embed_in_shards_streams_a_memmap_into_one_output(tmp_path):
    n = 20_000
    pool = np.lib.format.open_memmap(tmp_path / "pool.npy", mode="w+", dtype=np.uint8, shape=(n, 8, 8, 3))
    pool[:] = np.random.default_rng(0).integers(0, 256, pool.shape, dtype=np.uint8)
    pool.flush()
    pool = np.load(tmp_path / "pool.npy", mmap_mode="r")
    tracemalloc.start()
    emb = embed_in_shards(fake_encode, pool, shard=1000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert np.array_equal(emb, fake_encode(np.asarray(pool)))
    # The output plus one shard's working arrays; collecting shards and concatenating would need twice the output.
    assert peak < emb.nbytes * 1.3, (peak, emb.nbytes)


def test_embed_in_shards_of_no_images_keeps_the_dimension():
    assert embed_in_shards(fake_encode, np.zeros((0, 8, 8, 3), np.uint8)).shape == (0, DIM)


def test_encode_images_in_batches_equals_one_batch(tmp_path):
    torch.manual_seed(0)
    cfg_vision = open_clip.model.CLIPVisionCfg(image_size=32, layers=1, width=32, head_width=16, patch_size=8)
    cfg_text = open_clip.model.CLIPTextCfg(context_length=16, vocab_size=100, width=32, heads=2, layers=1)
    model = open_clip.model.CLIP(16, cfg_vision, cfg_text)
    images = np.random.default_rng(0).integers(0, 256, (70, 32, 32, 3), dtype=np.uint8)
    batched = ClipModelEncoder("tiny", model, None, {"id": "tiny"}, tmp_path, batch_size=16)
    whole = ClipModelEncoder("tiny", model, None, {"id": "tiny-whole"}, None, batch_size=70)
    emb = batched.encode_images(images)
    assert emb.dtype == np.float32 and emb.shape == (70, 16)
    np.testing.assert_allclose(emb, whole.encode_images(images), atol=1e-5)
    assert np.array_equal(batched.encode_images(images), emb)  # the second call reads the cache
    assert len(list((tmp_path / "embeddings" / "tiny").glob("*.npy"))) == 1
