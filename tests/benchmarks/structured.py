"""Pool-like embeddings for the curation benchmarks: a mixture of clusters on a low-dimensional manifold.

Real image embeddings are neither uniform on the sphere (where no approximate index can beat a scan)
nor tight, well separated blobs: they concentrate near a low-dimensional subspace, in clusters of very
unequal size and spread, and web pools hold near-copies of the same picture.  This mixture has all of
that: cluster centres in a 96-dimensional subspace of R^512, long-tailed cluster sizes (Dirichlet
weights), a per-cluster spread, within-cluster variation mostly inside the subspace plus isotropic noise,
and planted near-duplicates (cosine ≈ 0.97-0.99 to their source).  Rows are generated in chunks,
straight into a preallocated float32 array (or a memmap), so 1M x 512 needs its 2 GiB and little more.
"""

from __future__ import annotations

import numpy as np

DIM = 512
SUBSPACE = 96
ROWS_PER_CLUSTER = 500
CHUNK = 65_536


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def mixture(
    n: int, n_planted: int, dim: int = DIM, seed: int = 0, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n L2-normalised rows whose last `n_planted` rows are near-copies of earlier rows.

    Returns (rows, planted source row of each near-copy, cluster of each row).
    """
    rng = np.random.default_rng(seed)
    n_clusters = max(1, n // ROWS_PER_CLUSTER)
    basis = np.linalg.qr(rng.standard_normal((dim, SUBSPACE)))[0].astype(np.float32)  # (dim, SUBSPACE)
    centres = unit(rng.standard_normal((n_clusters, SUBSPACE)).astype(np.float32) @ basis.T)
    weights = rng.dirichlet(np.full(n_clusters, 0.7))
    spread = rng.uniform(0.5, 1.3, n_clusters).astype(np.float32)
    n_orig = n - n_planted
    cluster = np.empty(n, np.int64)
    cluster[:n_orig] = rng.choice(n_clusters, n_orig, p=weights)
    x = np.empty((n, dim), np.float32) if out is None else out
    for start in range(0, n_orig, CHUNK):
        c = cluster[start : min(start + CHUNK, n_orig)]
        inside = rng.standard_normal((len(c), SUBSPACE), dtype=np.float32) @ basis.T / np.sqrt(SUBSPACE)
        noise = rng.standard_normal((len(c), dim), dtype=np.float32) / np.sqrt(dim)
        x[start : start + len(c)] = unit(centres[c] + spread[c, None] * (inside + 0.35 * noise))
    source = np.sort(rng.choice(n_orig, n_planted, replace=False))
    cluster[n_orig:] = cluster[source]
    strength = rng.uniform(0.12, 0.25, (n_planted, 1)).astype(np.float32)
    x[n_orig:] = unit(x[source] + strength * rng.standard_normal((n_planted, dim), dtype=np.float32) / np.sqrt(dim))
    return x, source, cluster
