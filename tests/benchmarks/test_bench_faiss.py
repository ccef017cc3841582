"""faiss curation (ssl-pipeline stages 2–3) vs brute force on random 512-d embeddings.

Run with ``pytest tests/benchmarks/test_bench_faiss.py --benchmark-only -p no:cacheprovider -s``.
100,000 rows by default; ``FAIRBENCH_BENCH_ROWS=1000000`` for the 1M k-NN run.  The
faiss call goes through pytest-benchmark; brute force (torch matmul + top-k,
chunked) is timed once.  extra_info records the index kind and recall@10
against exact search.  Uniformly random vectors are the worst case for IVF
(no cluster structure to exploit), so recall here is a lower bound.
"""

import os
import time

import numpy as np
import pytest
import torch

from fairfacebench.methods.curation import build_index, deduplicate

N_ROWS = int(os.environ.get("FAIRBENCH_BENCH_ROWS", 100_000))
DIM = 512
N_QUERIES = 1000
K = 10
N_PLANTED = 1000
THRESHOLD = 0.95


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def embeddings():
    """N_ROWS random unit vectors; the last N_PLANTED are near-copies (cosine ≈ 0.99) of random earlier rows."""
    rng = np.random.default_rng(0)
    x = unit(rng.standard_normal((N_ROWS, DIM), dtype=np.float32))
    src = rng.choice(N_ROWS - N_PLANTED, N_PLANTED, replace=False)
    x[-N_PLANTED:] = unit(x[src] + 0.15 / np.sqrt(DIM) * rng.standard_normal((N_PLANTED, DIM), dtype=np.float32))
    return x, src


def torch_knn(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-NN by inner product: matmul + top-k over query chunks of at most 2^28 similarities (brute force)."""
    b, q = torch.from_numpy(base), torch.from_numpy(queries)
    chunk = max(1, 2**28 // len(base))
    sims, ids = [], []
    for start in range(0, len(q), chunk):
        s, i = (q[start : start + chunk] @ b.T).topk(k, dim=1)
        sims.append(s)
        ids.append(i)
    return torch.cat(sims).numpy(), torch.cat(ids).numpy()


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def _seconds(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def test_knn_retrieval_faiss_vs_brute_force(benchmark, embeddings):
    x, _ = embeddings
    queries = x[np.random.default_rng(1).choice(len(x), N_QUERIES, replace=False)]
    build_s, index = _seconds(lambda: build_index(x))
    sims, found = benchmark.pedantic(index.search, args=(queries, K), rounds=3, iterations=1)
    torch_s, (_, truth) = _seconds(lambda: torch_knn(x, queries, K))
    flat_build_s, flat = _seconds(lambda: build_index(x, flat_max=len(x)))
    flat_s, (_, flat_found) = _seconds(lambda: flat.search(queries, K))
    assert recall_at_k(flat_found, truth) > 0.999
    recall = recall_at_k(found, truth)
    benchmark.extra_info.update(
        rows=len(x),
        dim=DIM,
        queries=N_QUERIES,
        k=K,
        index=index.kind,
        index_build_s=round(build_s, 2),
        recall_at_10=round(recall, 4),
        torch_brute_force_s=round(torch_s, 3),
        faiss_flat_s=round(flat_s, 3),
        faiss_flat_build_s=round(flat_build_s, 2),
    )
    print(f"\n{benchmark.extra_info}")
    assert recall > 0.2 if index.kind.startswith("ivf") else recall > 0.999


@pytest.mark.skipif(N_ROWS > 200_000, reason="brute-force de-duplication is O(n²·d): hours at 1M rows on a CPU")
def test_dedup_faiss_vs_brute_force(benchmark, embeddings):
    x, src = embeddings
    result = benchmark.pedantic(deduplicate, args=(x, THRESHOLD), rounds=1, iterations=1)
    found_planted = int((~result.keep[-N_PLANTED:]).sum() + (~result.keep[src]).sum())
    # Brute force: every row's exact nearest other row, chunked matmul (O(n²d) flops, no Python pair loop).
    torch_s, (sims, ids) = _seconds(lambda: torch_knn(x, x, 2))
    exact_pairs = int((sims[:, 1] >= THRESHOLD).sum() // 2)
    benchmark.extra_info.update(
        rows=len(x),
        dim=DIM,
        threshold=THRESHOLD,
        index=result.index_kind,
        removed=result.n_removed,
        planted_pairs=N_PLANTED,
        planted_pairs_removed=found_planted,
        exact_pairs_above_threshold=exact_pairs,
        torch_brute_force_s=round(torch_s, 2),
    )
    print(f"\n{benchmark.extra_info}")
    assert exact_pairs == N_PLANTED
    assert result.n_removed >= 0.95 * N_PLANTED and found_planted >= 0.95 * N_PLANTED
