"""Pool curation with faiss: index choice by size, near-duplicate removal, target-domain retrieval.

Embeddings are float32 rows, L2-normalised, so inner product is cosine
similarity.  `build_index` chooses the index by size: exact (flat) up to
`FLAT_MAX` rows; above, an inverted file (IVF, Jégou et al., TPAMI 2011;
faiss, Johnson et al. 2019) whose `nprobe` is tuned on the data to a target
recall@k against exact search; IVF-PQ with exact re-ranking when the float
index would not fit the memory budget.  No step compares all pairs in Python:
duplicate groups are the connected components of the thresholded k-NN graph
(scipy.sparse.csgraph), one image kept per group, as in SemDeDup (Abbas et
al. 2023).  Choices and measurements: docs/METHODS.md.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# Exact search up to this many indexed rows; an approximate index above.
FLAT_MAX = 50_000
# recall@k against exact search that `nprobe` is tuned to reach on a sample of indexed rows: 0.95 and a margin,
# since held-out queries scored 0.01-0.015 below the indexed rows the tuning uses (1M x 512 benchmark).
TARGET_RECALL = 0.97
# Doubling nprobe stops early when it gains less than this: the recall a compressed index can reach at all.
PLATEAU = 0.002
# Indexed rows used as tuning queries (recall estimated to about ±1%).
TUNE_QUERIES = 512
# Rows per chunk when adding to an index or scanning exactly: bounded working memory for memmapped inputs.
CHUNK = 65_536
# IVF-PQ: bytes per compressed row (d/8 sub-quantisers of 8 bits) and candidates re-ranked exactly per result.
PQ_BYTES_PER_DIM = 1 / 8
RERANK = 8
# Queries re-ranked together: their candidate rows (256 x 8k x d floats) stay a few tens of MB.
RERANK_QUERIES = 256


def thumbnails(images: np.ndarray, size: int = 16, shard: int = 4096) -> np.ndarray:
    """Instance-level vectors for near-duplicate search: antialiased size×size RGB thumbnails, centred, L2-normalised.

    A continuous form of the average hash of perceptual image hashing: it
    keeps the colours and layout that make one picture that picture, which a
    semantic embedding trained on attribute captions discards.
    """
    out = []
    for start in range(0, len(images), shard):
        # astype makes the one float copy, writable even when the images are a read-only memmap
        x = torch.from_numpy(images[start : start + shard].astype(np.float32)).permute(0, 3, 1, 2)
        v = F.interpolate(x, size=size, mode="bilinear", antialias=True).flatten(1)
        out.append(F.normalize(v - v.mean(1, keepdim=True), dim=1))
    return torch.cat(out).numpy() if out else np.zeros((0, 3 * size * size), np.float32)


@dataclass
class SearchIndex:
    """A faiss index over L2-normalised rows and a short description of its kind (recorded in stage logs).

    `rows` is set for compressed indexes: the source rows (an array or a memmap) whose exact inner
    products re-rank the `RERANK * k` candidates of each query.
    """

    index: faiss.Index
    kind: str
    rows: np.ndarray | None = None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarities and ids of the k nearest indexed rows per query (id -1 where fewer exist)."""
        sims, ids = [], []
        for start in range(0, len(queries), CHUNK):  # queries may be a memmap: one chunk in memory at a time
            q = np.ascontiguousarray(queries[start : start + CHUNK], dtype=np.float32)
            if self.rows is None:
                s, i = self.index.search(q, k)
            else:
                s, i = rerank(q, self.index.search(q, RERANK * k)[1], self.rows, k)
            sims.append(s)
            ids.append(i)
        if not sims:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        return np.concatenate(sims), np.concatenate(ids)


def rerank(queries: np.ndarray, candidates: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k candidates of each query with the highest exact inner product, read from `rows` (memmaps stay on disk)."""
    sims = np.full(candidates.shape, -np.inf, np.float32)
    for start in range(0, len(queries), RERANK_QUERIES):
        block = candidates[start : start + RERANK_QUERIES]
        wanted = np.unique(block[block >= 0])  # sorted: a memmap is read front to back
        if len(wanted):
            vectors = np.asarray(rows[wanted], dtype=np.float32)[np.searchsorted(wanted, np.maximum(block, 0))]
            found = np.matmul(vectors, queries[start : start + RERANK_QUERIES, :, None])[..., 0]
            sims[start : start + RERANK_QUERIES] = np.where(block >= 0, found, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(sims, order, 1)
    return best, np.where(np.isfinite(best), np.take_along_axis(candidates, order, 1), -1)


def exact_knn(queries: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner products of every query over `rows`, scanned in chunks (rows may be a memmap)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for start in range(0, len(rows), CHUNK):
        chunk = np.ascontiguousarray(rows[start : start + CHUNK], dtype=np.float32)
        s, i = faiss.knn(q, chunk, min(k, len(chunk)), metric=faiss.METRIC_INNER_PRODUCT)
        all_s, all_i = np.concatenate([best_s, s], 1), np.concatenate([best_i, i + start], 1)
        order = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(all_s, order, 1), np.take_along_axis(all_i, order, 1)
    return best_s, best_i


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row's true k nearest ids (-1 = none) that `found` holds: recall@k against exact search."""
    hits = ((found[:, :, None] == truth[:, None, :]) & (truth[:, None, :] >= 0)).any(1).sum(1)
    return float(np.mean(hits / np.maximum((truth >= 0).sum(1), 1)))


def without_self(ids: np.ndarray, query_ids: np.ndarray, k: int) -> np.ndarray:
    """The first k ids of each row other than the query's own id (indexed rows searched for themselves)."""
    order = np.argsort(ids == query_ids[:, None], axis=1, kind="stable")  # self moves last, the rest keep their rank
    return np.take_along_axis(ids, order, 1)[:, :k]


def memory_budget() -> int:
    """Bytes a float index may hold: half the memory available now (the rest for data, models and other runs)."""
    try:
        with open("/proc/meminfo") as meminfo:
            available = next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return available // 2


def ivf_lists(n: int) -> int:
    """nlist ≈ 2√n, a power of two: below faiss' 4–16√n, since assigning n rows costs n·nlist·d (55 s at 1M x 512)."""
    return int(2 ** round(math.log2(2 * math.sqrt(n))))


def pq_subquantizers(d: int) -> int:
    """Sub-quantisers of IVF-PQ: about d/8 (one byte per 8 dimensions), a divisor of d."""
    m = max(1, round(d * PQ_BYTES_PER_DIM))
    while d % m:
        m -= 1
    return m


def add_in_chunks(index: faiss.Index, x: np.ndarray) -> None:
    for start in range(0, len(x), CHUNK):
        index.add(np.ascontiguousarray(x[start : start + CHUNK], dtype=np.float32))


def tune_nprobe(index: SearchIndex, x: np.ndarray, k: int, recall: float, seed: int) -> tuple[int, float]:
    """The smallest nprobe whose recall@k against exact search reaches `recall` on sampled indexed rows.

    Each sampled row searches for its k nearest other rows; doubling brackets nprobe, bisection narrows it.
    When doubling stops paying (a compressed index's own limit), the last nprobe that did pay is kept.
    """
    ivf = faiss.extract_index_ivf(index.index)
    rng = np.random.default_rng(seed + 1)
    query_ids = np.sort(rng.choice(len(x), min(TUNE_QUERIES, len(x)), replace=False))
    queries = np.ascontiguousarray(x[query_ids], dtype=np.float32)
    truth = without_self(exact_knn(queries, x, k + 1)[1], query_ids, k)
    measured: dict[int, float] = {}

    def recall_with(nprobe: int) -> float:
        if nprobe not in measured:
            ivf.nprobe = nprobe
            measured[nprobe] = recall_at_k(without_self(index.search(queries, k + 1)[1], query_ids, k), truth)
        return measured[nprobe]

    hi = 1
    while hi < ivf.nlist and recall_with(hi) < recall:
        if hi > 1 and recall_with(hi) - recall_with(hi // 2) < PLATEAU:
            ivf.nprobe = hi // 2  # more probes no longer pay: PQ codes, not the lists, limit recall
            return hi // 2, recall_with(hi // 2)
        hi = min(2 * hi, ivf.nlist)
    lo = hi // 2  # recall_with(lo) < recall, or lo == 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if recall_with(mid) >= recall else (mid, hi)
    ivf.nprobe = hi
    return hi, recall_with(hi)


def build_index(
    x: np.ndarray,
    k: int = 10,
    flat_max: int = FLAT_MAX,
    recall: float = TARGET_RECALL,
    nprobe: int | None = None,
    memory: int | None = None,
    seed: int = 0,
) -> SearchIndex:
    """Exact inner-product index up to `flat_max` rows; above, IVF with nprobe tuned to `recall`@k.

    IVF-Flat keeps the float rows (n·d·4 bytes); when those exceed `memory` (default: `memory_budget()`),
    IVF-PQ keeps d/8-byte codes and re-ranks candidates against `x` itself, which may be a memmap.  The
    coarse quantiser is trained on at most 40 rows per list (faiss asks for at least 39).
    """
    n, d = x.shape
    if n <= flat_max:
        index = faiss.IndexFlatIP(d)
        add_in_chunks(index, x)
        return SearchIndex(index, "flat")
    nlist = ivf_lists(n)
    compressed = n * d * 4 > (memory_budget() if memory is None else memory)
    quantizer = faiss.IndexFlatIP(d)
    if compressed:
        m = pq_subquantizers(d)
        index = faiss.IndexIVFPQ(quantizer, d, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
        name = f"ivf-pq(nlist={nlist}, m={m}, rerank={RERANK}x"
    else:
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        name = f"ivf-flat(nlist={nlist}"
    sample = np.sort(np.random.default_rng(seed).choice(n, min(n, 40 * nlist), replace=False))
    index.train(np.ascontiguousarray(x[sample], dtype=np.float32))
    add_in_chunks(index, x)
    out = SearchIndex(index, "", x if compressed else None)
    if nprobe is None:
        probe, measured = tune_nprobe(out, x, k, recall, seed)
        out.kind = f"{name}, nprobe={probe} tuned to recall@{k} {measured:.3f})"
    else:
        index.nprobe = nprobe
        out.kind = f"{name}, nprobe={nprobe})"
    return out


@dataclass
class Dedup:
    """Result of near-duplicate removal: which rows stay and the kept representative of every row."""

    keep: np.ndarray  # bool (N,)
    representative: np.ndarray  # int (N,), the row kept for each row's duplicate group
    index_kind: str

    @property
    def n_removed(self) -> int:
        return int((~self.keep).sum())


def deduplicate(x: np.ndarray, threshold: float, k: int = 8, flat_max: int = FLAT_MAX) -> Dedup:
    """Drop near-duplicates: rows whose cosine similarity to another row is at least `threshold`.

    Edges i–j of the k-NN graph with similarity ≥ threshold join duplicate
    groups (connected components); each group keeps its lowest row index.
    """
    n = len(x)
    if n == 0:
        return Dedup(np.zeros(0, bool), np.zeros(0, np.int64), "empty")
    index = build_index(x, k, flat_max)
    sims, ids = index.search(x, min(k + 1, n))
    rows = np.repeat(np.arange(n), ids.shape[1])
    edge = (sims.ravel() >= threshold) & (ids.ravel() >= 0) & (ids.ravel() != rows)
    graph = coo_matrix((np.ones(int(edge.sum()), np.int8), (rows[edge], ids.ravel()[edge])), shape=(n, n))
    n_groups, group = connected_components(graph, directed=False)
    first = np.full(n_groups, n, np.int64)
    np.minimum.at(first, group, np.arange(n))
    representative = first[group]
    return Dedup(representative == np.arange(n), representative, index.kind)


def domain_similarity(
    pool: np.ndarray, target: np.ndarray, k: int = 10, flat_max: int = FLAT_MAX
) -> tuple[np.ndarray, str]:
    """Per pool row, the mean cosine similarity to its k nearest target-domain rows (higher = more in-domain)."""
    index = build_index(target, k, flat_max)
    sims, ids = index.search(pool, min(k, len(target)))
    sims = np.where(ids >= 0, sims, np.nan)
    return np.nanmean(sims, axis=1), index.kind


def in_domain_floor(target: np.ndarray, k: int = 10, quantile: float = 0.05, flat_max: int = FLAT_MAX) -> float:
    """The `quantile` of target rows' own scores (mean similarity to their k nearest *other* target rows).

    A pool row scoring at least this is as close to the target domain as a
    typical target image is: the floor below which retrieval never goes.
    """
    sims, ids = build_index(target, k, flat_max).search(target, min(k + 1, len(target)))
    own = np.where((ids >= 0) & (ids != np.arange(len(target))[:, None]), sims, np.nan)
    return float(np.quantile(np.nanmean(own, axis=1), quantile))


def select_nearest(scores: np.ndarray, n_keep: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Indices of the `n_keep` highest scores; with `groups`, an equal share per group (unused shares go to the rest).

    Balancing over inferred demographic groups is the optional step of METHODS.md (ssl-pipeline, stage 3).
    """
    n_keep = min(n_keep, len(scores))
    order = np.argsort(-scores, kind="stable")
    if groups is None:
        return np.sort(order[:n_keep])
    labels = np.unique(groups)
    ranked = [order[groups[order] == g] for g in labels]
    share = np.zeros(len(labels), np.int64)
    left = n_keep
    # Water-filling: equal shares, capped by each group's size, the remainder re-shared.
    while left > 0:
        open_ = [i for i, r in enumerate(ranked) if share[i] < len(r)]
        if not open_:
            break
        each = max(1, left // len(open_))
        for i in open_:
            take = min(each, len(ranked[i]) - share[i], left)
            share[i] += take
            left -= take
            if left == 0:
                break
    return np.sort(np.concatenate([r[:s] for r, s in zip(ranked, share)]))
