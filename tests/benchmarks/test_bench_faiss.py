"""faiss curation (ssl-pipeline stages 2–3): the index `build_index` chooses versus exact search, on pool-like data.

Run with ``pytest tests/benchmarks/test_bench_faiss.py --benchmark-only -p no:cacheprovider``.  100,000 x 512
rows by default; ``FAIRBENCH_BENCH_ROWS=1000000`` for the 1M run (about 15 minutes on 2 cores, 8 GiB).
The rows are a mixture of clusters on a low-dimensional manifold with 1% planted near-duplicates
(structured.py); never structureless noise, where no approximate index can work.

- k-NN retrieval, per index kind (IVF-Flat as chosen, IVF-PQ as chosen when the float rows do not fit):
  recall@10 of 1,000 held-out queries against exact search, and the speedup over exact search
  (`IndexFlatIP`, BLAS) as the median of interleaved rounds;
- de-duplication: recall of the planted near-duplicates, and its speedup over an exact all-pairs scan,
  extrapolated from an exact scan of 1,000 rows (scan time is linear in the number of query rows).
"""

import os
import time

import faiss
import numpy as np
import pytest
from structured import mixture
from verdicts import Verdict, interleaved, seconds

from fairfacebench.methods.curation import build_index, deduplicate, exact_knn, recall_at_k

N_ROWS = int(os.environ.get("FAIRBENCH_BENCH_ROWS", 100_000))
N_QUERIES = 1000
K = 10
THRESHOLD = 0.95
# The speed target is for 1M rows; below, an exact scan is short and IVF gains less.
SPEEDUP_TARGET = 20 if N_ROWS >= 1_000_000 else 5
SIZE = f"{N_ROWS // 1000}k" if N_ROWS < 1_000_000 else f"{N_ROWS / 1e6:g}M"


@pytest.fixture(scope="module")
def pool():
    """N_ROWS indexed rows (1% planted near-copies at the end) and N_QUERIES held-out rows of the same mixture."""
    x, source, _ = mixture(N_ROWS + N_QUERIES, N_ROWS // 100)
    originals = np.setdiff1d(np.arange(len(x) - len(source)), source)
    held_out = np.sort(np.random.default_rng(1).choice(originals, N_QUERIES, replace=False))
    keep = np.ones(len(x), bool)
    keep[held_out] = False
    # Re-number planted sources after the held-out rows leave (none of them is a source or a copy).
    shift = np.cumsum(~keep)
    source = source - shift[source]
    return x[held_out], np.ascontiguousarray(x[keep]), source


@pytest.fixture(scope="module")
def exact(pool):
    queries, rows, _ = pool
    flat = faiss.IndexFlatIP(rows.shape[1])
    flat.add(rows)
    return flat, flat.search(queries, K)[1]


@pytest.mark.parametrize("kind", ["ivf-flat", "ivf-pq"])
def test_knn_retrieval_vs_exact_search(benchmark, verdict, pool, exact, kind):
    queries, rows, _ = pool
    flat, truth = exact
    memory = None if kind == "ivf-flat" else rows.nbytes - 1  # IVF-PQ: as chosen when the float rows do not fit
    started = time.perf_counter()
    index = benchmark.pedantic(build_index, args=(rows, K), kwargs={"memory": memory}, rounds=1, iterations=1)
    build_s = time.perf_counter() - started
    recall = recall_at_k(index.search(queries, K)[1], truth)
    rounds = interleaved(
        lambda: seconds(lambda: flat.search(queries, K)),
        lambda: seconds(lambda: index.search(queries, K)),
        min_rounds=3 if N_ROWS >= 1_000_000 else 5,
        max_rounds=5 if N_ROWS >= 1_000_000 else 11,
        max_spread=0.1,
    )
    benchmark.extra_info.update(
        rows=len(rows),
        dim=rows.shape[1],
        queries=N_QUERIES,
        index=index.kind,
        build_s=round(build_s, 1),
        recall_at_10=round(recall, 4),
        exact_search_s=round(float(np.median(rounds.numerators)), 3),
        index_search_s=round(float(np.median(rounds.denominators)), 4),
        speedup_rounds=[round(r, 1) for r in rounds.ratios],
    )
    assert index.kind.startswith(kind), index.kind
    verdict(Verdict(f"faiss/{kind} recall@10 {SIZE}", recall, 0.95, note=index.kind))
    verdict(
        rounds.verdict(
            f"faiss/{kind} exact/index search time {SIZE}",
            SPEEDUP_TARGET,
            unit="x",
            note=f"{N_QUERIES} queries; build {build_s:.0f} s",
        )
    )


def test_dedup_vs_exact_all_pairs(benchmark, verdict, pool):
    _, rows, source = pool
    copies = np.arange(len(rows) - len(source), len(rows))
    result = benchmark.pedantic(deduplicate, args=(rows, THRESHOLD), rounds=1, iterations=1)
    dedup_s = benchmark.stats.stats.median
    resolved = float(np.mean(result.representative[copies] == result.representative[source]))
    sample = np.random.default_rng(2).choice(len(rows), N_QUERIES, replace=False)
    exact_sample_s = seconds(lambda: exact_knn(rows[sample], rows, 2))
    exact_all_s = exact_sample_s * len(rows) / N_QUERIES
    benchmark.extra_info.update(
        rows=len(rows),
        threshold=THRESHOLD,
        index=result.index_kind,
        removed=result.n_removed,
        planted=len(copies),
        planted_resolved=resolved,
        dedup_s=round(dedup_s, 1),
        exact_all_pairs_s_extrapolated=round(exact_all_s, 1),
    )
    verdict(Verdict(f"faiss/dedup planted-duplicate recall {SIZE}", resolved, 0.99, note=result.index_kind))
    verdict(
        Verdict(
            f"faiss/dedup exact all-pairs/dedup time {SIZE}",
            exact_all_s / dedup_s,
            SPEEDUP_TARGET,
            unit="x",
            note=f"exact extrapolated from {N_QUERIES} rows; dedup {dedup_s:.0f} s, removed {result.n_removed}",
        )
    )
