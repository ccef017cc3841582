"""faiss index choice of pool curation: exact, IVF with tuned nprobe, IVF-PQ with re-ranking from a memmap."""

import numpy as np
import pytest

from fairfacebench.methods import curation
from fairfacebench.methods.curation import (
    build_index,
    deduplicate,
    exact_knn,
    recall_at_k,
    rerank,
    tune_nprobe,
    without_self,
)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def clustered():
    """6,000 rows in 60 clusters of unequal spread (64-d), the last 60 near-copies of earlier rows."""
    rng = np.random.default_rng(0)
    centres = unit(rng.normal(size=(60, 64)))
    cluster = rng.integers(0, 60, 5940)
    spread = rng.uniform(0.6, 1.4, 60)[cluster, None]
    x = unit(centres[cluster] + spread * rng.normal(size=(5940, 64)) / 8)
    source = rng.choice(5940, 60, replace=False)
    copies = unit(x[source] + 0.02 * rng.normal(size=(60, 64)))
    return np.concatenate([x, copies]), source


def self_recall(index, x, k=10, n=300):
    ids = np.arange(n)
    truth = without_self(exact_knn(x[:n], x, k + 1)[1], ids, k)
    return recall_at_k(without_self(index.search(x[:n], k + 1)[1], ids, k), truth)


def test_recall_at_k_and_without_self_by_hand():
    truth = np.array([[1, 2, 3], [4, 5, -1]])
    found = np.array([[3, 9, 1], [5, 7, 8]])
    assert recall_at_k(found, truth) == pytest.approx((2 / 3 + 1 / 2) / 2)
    ids = np.array([[7, 1, 2, 3], [4, 5, 6, 8]])
    assert without_self(ids, np.array([7, 9]), 3).tolist() == [[1, 2, 3], [4, 5, 6]]


def test_exact_knn_scans_in_chunks_like_one_flat_search(clustered, monkeypatch):
    x, _ = clustered
    whole_s, whole_i = exact_knn(x[:50], x, 10)
    monkeypatch.setattr(curation, "CHUNK", 777)
    chunk_s, chunk_i = exact_knn(x[:50], x, 10)
    assert np.array_equal(whole_i, chunk_i) and np.allclose(whole_s, chunk_s)
    assert np.allclose(whole_s, np.sort(x[:50] @ x.T, axis=1)[:, ::-1][:, :10], atol=1e-5)


def test_index_is_chosen_by_size_and_memory(clustered):
    x, _ = clustered
    assert build_index(x).kind == "flat"
    assert build_index(x, flat_max=1000).kind.startswith("ivf-flat(")
    compressed = build_index(x, flat_max=1000, memory=x.nbytes - 1)
    assert compressed.kind.startswith("ivf-pq(") and compressed.rows is x


@pytest.mark.parametrize("memory", [None, 1], ids=["ivf-flat", "ivf-pq"])
def test_tuned_nprobe_is_the_smallest_reaching_the_target_recall(clustered, memory):
    x, _ = clustered
    index = build_index(x, flat_max=1000, recall=0.95, memory=memory)
    assert self_recall(index, x) >= 0.93  # tuned on other sampled rows: the target up to sampling error
    ivf = curation.faiss.extract_index_ivf(index.index)
    chosen = ivf.nprobe
    assert 1 < chosen < ivf.nlist, index.kind  # clustered data need more than one list and far fewer than all
    _, tuned = tune_nprobe(index, x, 10, 0.95, seed=0)
    assert tuned >= 0.95
    ivf.nprobe = chosen - 1
    ids = np.sort(np.random.default_rng(1).choice(len(x), curation.TUNE_QUERIES, replace=False))
    truth = without_self(exact_knn(x[ids], x, 11)[1], ids, 10)
    assert recall_at_k(without_self(index.search(x[ids], 11)[1], ids, 10), truth) < 0.95


def test_ivf_pq_reranks_candidates_against_rows_on_disk(clustered, tmp_path):
    x, _ = clustered
    rows = np.lib.format.open_memmap(tmp_path / "rows.npy", mode="w+", dtype=np.float32, shape=x.shape)
    rows[:] = x
    rows.flush()
    rows = np.load(tmp_path / "rows.npy", mmap_mode="r")
    index = build_index(rows, flat_max=1000, memory=1)
    sims, ids = index.search(x[:100], 10)
    assert np.allclose(sims, np.einsum("qd,qkd->qk", x[:100], x[ids]), atol=1e-5)  # exact, not PQ, similarities
    assert (np.diff(sims, axis=1) <= 1e-6).all()
    assert (ids[:, 0] == np.arange(100)).mean() > 0.99  # each row finds itself first


def test_rerank_marks_missing_candidates():
    rows = unit(np.random.default_rng(0).normal(size=(5, 8)))
    sims, ids = rerank(rows[:1], np.array([[3, -1, 0]]), rows, 3)
    assert ids.tolist() == [[0, 3, -1]] and sims[0, 0] == pytest.approx(1.0) and sims[0, 2] == -np.inf


@pytest.mark.parametrize("memory", [None, 1], ids=["ivf-flat", "ivf-pq"])
def test_dedup_finds_planted_copies_through_approximate_indexes(clustered, memory, monkeypatch):
    x, source = clustered
    if memory is not None:
        monkeypatch.setattr(curation, "memory_budget", lambda: memory)
    result = deduplicate(x, threshold=0.97, flat_max=1000)
    assert result.index_kind.startswith("ivf-pq" if memory else "ivf-flat")
    copies = np.arange(len(x) - 60, len(x))
    assert (result.representative[copies] == result.representative[source]).all()
