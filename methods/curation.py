"""Pool curation with faiss: index choice by size, near-duplicate removal, target-domain retrieval.

Embeddings are float32 rows, L2-normalised, so inner product is cosine
similarity.  Search is exact (a flat index) up to `FLAT_MAX` rows; beyond
that an inverted-file index (IVF, Jégou et al., TPAMI 2011; faiss, Johnson et
al. 2019) with `nlist ≈ 4√n` lists, whose speed and recall@10 against brute
force are measured in tests/benchmarks/test_bench_faiss.py.  No step compares
all pairs in Python: duplicate groups are the connected components of the
thresholded k-NN graph (scipy.sparse.csgraph), one image kept per group, as
in SemDeDup (Abbas et al. 2023).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# Exact search up to this many indexed rows; IVF above.
FLAT_MAX = 50_000


def thumbnails(images: np.ndarray, size: int = 16, shard: int = 4096) -> np.ndarray:
    """Instance-level vectors for near-duplicate search: antialiased size×size RGB thumbnails, centred, L2-normalised.

    A continuous form of the average hash of perceptual image hashing: it
    keeps the colours and layout that make one picture that picture, which a
    semantic embedding trained on attribute captions discards.
    """
    out = []
    for start in range(0, len(images), shard):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + shard])).permute(0, 3, 1, 2).float()
        v = F.interpolate(x, size=size, mode="bilinear", antialias=True).flatten(1)
        out.append(F.normalize(v - v.mean(1, keepdim=True), dim=1))
    return torch.cat(out).numpy() if out else np.zeros((0, 3 * size * size), np.float32)


@dataclass
class SearchIndex:
    """A faiss index over L2-normalised rows and a short description of its kind (recorded in stage logs)."""

    index: faiss.Index
    kind: str

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarities and ids of the k nearest indexed rows per query (id -1 where fewer exist)."""
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def build_index(x: np.ndarray, flat_max: int = FLAT_MAX, nprobe: int | None = None, seed: int = 0) -> SearchIndex:
    """Exact inner-product index for up to `flat_max` rows, IVF-Flat with nlist ≈ 4√n above.

    The IVF coarse quantiser is trained on at most 64 rows per list (faiss'
    guideline of 30–256); `nprobe` defaults to nlist/16, the usual
    recall/speed compromise.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    if n <= flat_max:
        index = faiss.IndexFlatIP(d)
        index.add(x)
        return SearchIndex(index, "flat")
    nlist = int(2 ** round(math.log2(4 * math.sqrt(n))))
    probe = nprobe or max(1, nlist // 16)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(seed).choice(n, min(n, 64 * nlist), replace=False)
    index.train(x[np.sort(sample)])
    index.add(x)
    index.nprobe = probe
    return SearchIndex(index, f"ivf-flat(nlist={nlist}, nprobe={probe})")


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
    index = build_index(x, flat_max)
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
    index = build_index(target, flat_max)
    sims, ids = index.search(pool, min(k, len(target)))
    sims = np.where(ids >= 0, sims, np.nan)
    return np.nanmean(sims, axis=1), index.kind


def in_domain_floor(target: np.ndarray, k: int = 10, quantile: float = 0.05, flat_max: int = FLAT_MAX) -> float:
    """The `quantile` of target rows' own scores (mean similarity to their k nearest *other* target rows).

    A pool row scoring at least this is as close to the target domain as a
    typical target image is: the floor below which retrieval never goes.
    """
    sims, ids = build_index(target, flat_max).search(target, min(k + 1, len(target)))
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
