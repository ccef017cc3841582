"""Embedding a large image array shard by shard: in this process, or as Ray tasks across a cluster.

A pool of a million images is the one place where a single run's work splits
naturally: every shard embeds independently.  `embed_in_shards` streams the
shards through an encoder into one preallocated output (memory holds one shard
of images at a time; memmapped pools stay on disk).  With `--executor ray` the
harness hands the run a `RayShards`, and each shard becomes a Ray task that
receives the encoder once (from the object store) and its shard of images; at
most as many shards are in flight as the cluster has CPUs (GPUs when the
encoder sits on one), so memory stays bounded there too.  The result equals the
local one: every shard is embedded by the same encoder in eval mode.

An encoder with an on-disk embedding cache (open_clip, the mini-CLIP) caches
what it is given: locally the whole array, on Ray each shard.  Metering is the
caller's: the fit context's `MeteredEncoder` charges every image once, wherever it is embedded.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from fairfacebench.threads import compute_threads

# Images per shard: large enough that a Ray task's start-up is a small share of its work, a multiple of the
# encoders' batch of 256 so shard boundaries never change a batch.  FAIRBENCH_EMBED_SHARD overrides it (tests).
SHARD = 2048


def shard_size() -> int:
    return int(os.environ.get("FAIRBENCH_EMBED_SHARD", SHARD))


Encode = Callable[[np.ndarray], np.ndarray]


def shard_starts(n: int, shard: int) -> range:
    return range(0, n, shard)


def embed_in_shards(encode: Encode, images: np.ndarray, shard: int | None = None) -> np.ndarray:
    """`encode` applied shard by shard (`shard_size()` images by default), written into one (N, D) float32 array."""
    shard = shard or shard_size()
    if len(images) == 0:
        return np.asarray(encode(images), np.float32)
    out = None
    for start in shard_starts(len(images), shard):
        emb = encode(images[start : start + shard])
        if out is None:
            out = np.empty((len(images), emb.shape[1]), np.float32)
        out[start : start + len(emb)] = emb
    return out


def _encode_shard(encoder: Any, images: np.ndarray, threads: int) -> tuple[np.ndarray, int]:
    """A Ray task: one shard's embeddings and the id of the process that computed them (for the stage log).

    It computes with the run's thread count in every library, as the run would in its own process (same numbers).
    """
    with compute_threads(threads):
        return np.asarray(encoder.encode_images(images), np.float32), os.getpid()


class RayShards:
    """Embeds the shards of one array as Ray tasks, at most `in_flight` at a time (default: what the cluster holds).

    Called as `shards(encoder, images)`: an array of one shard or less is embedded here, a larger one as Ray tasks,
    each computing with `threads` torch threads (the run's own count) and reserving that many CPUs.  `report()`
    says what the calls did, for the run's stage log.
    """

    def __init__(self, threads: int = 1, in_flight: int | None = None, shard: int | None = None):
        self.threads, self.in_flight, self.shard = threads, in_flight, shard or shard_size()
        self.last: dict[str, Any] = {}  # what the last Ray call did
        self.calls = self.shards = self.processes = 0

    def __call__(self, encoder: Any, images: np.ndarray) -> np.ndarray:
        if len(images) <= self.shard:
            return embed_in_shards(encoder.encode_images, images, self.shard)
        emb = self.embed(encoder, images)
        self.calls += 1
        self.shards += self.last["shards"]
        self.processes = max(self.processes, self.last["processes"])
        return emb

    def report(self) -> dict[str, Any]:
        """The stage log's 'vlm-shards' numbers (empty when no array was large enough to shard)."""
        if not self.calls:
            return {}
        return {
            "executor": "ray",
            "calls": self.calls,
            "shards": self.shards,
            "shard_size": self.shard,
            "processes": self.processes,
        }

    def embed(self, encoder: Any, images: np.ndarray) -> np.ndarray:
        import ray

        if not ray.is_initialized():
            raise RuntimeError(
                "RayShards.embed runs inside a Ray cluster (--executor ray); ray.init() has not been called here"
            )
        device = str(getattr(encoder, "device", "cpu"))
        on_gpu = device.startswith("cuda")
        resources = {"num_gpus": 1} if on_gpu else {"num_cpus": self.threads}
        held = ray.cluster_resources().get("GPU" if on_gpu else "CPU", 1)
        in_flight = self.in_flight or max(1, int(held) // (1 if on_gpu else self.threads))
        task = ray.remote(max_retries=1, **resources)(_encode_shard)
        encoder_ref = ray.put(encoder)
        starts = list(shard_starts(len(images), self.shard))
        out: np.ndarray | None = None
        pending: dict[Any, int] = {}
        workers: set[int] = set()

        def collect(ref: Any) -> None:
            nonlocal out
            emb, pid = ray.get(ref)
            start = pending.pop(ref)
            if out is None:
                out = np.empty((len(images), emb.shape[1]), np.float32)
            out[start : start + len(emb)] = emb
            workers.add(pid)

        for start in starts:
            while len(pending) >= in_flight:
                done, _ = ray.wait(list(pending), num_returns=1)
                collect(done[0])
            shard = np.ascontiguousarray(images[start : start + self.shard])
            pending[task.remote(encoder_ref, shard, self.threads)] = start
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            collect(done[0])
        self.last = {"shards": len(starts), "shard_size": self.shard, "in_flight": in_flight, "processes": len(workers)}
        assert out is not None  # len(images) > 0: the caller embeds empty arrays itself
        return out
