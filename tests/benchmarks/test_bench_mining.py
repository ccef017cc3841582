"""Cost of one SHaSaM-MINE step: batch 128, 128-d embeddings, 8 cells, 4 positives and 4 negatives per anchor set.

Run with ``pytest tests/benchmarks --benchmark-only`` (the default configuration skips benchmarks).  The
verdict is the median time of one MINE step, which SHaSaM pays once per training step.
"""

import numpy as np
import pytest
import torch
from verdicts import Verdict, relative_spread

from fairfacebench.methods.submodular import FUNCTIONS, anchor_sets, mine_hard_samples, similarity_kernel

BATCH, DIM, BUDGET = 128, 128, 4
# A MINE step should cost a small share of a SHaSaM training step (MobileNetV2 forward and backward of the batch
# take hundreds of ms on one core).
TARGET_MS = 50


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, a default-grid worker's share (and robust to other processes' load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(BATCH, DIM, generator=g)
    y, a = torch.randint(0, 2, (BATCH,), generator=g), torch.randint(0, 4, (BATCH,), generator=g)
    return similarity_kernel(emb, 0.5), anchor_sets(y, a)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_bench_mine_hard_samples(benchmark, verdict, batch, function):
    kernel, sets = batch
    mined = benchmark(mine_hard_samples, kernel, sets, BUDGET, BUDGET, function)
    assert mined.pos_mask.all() and mined.neg_mask.all()
    times = benchmark.stats.stats.data
    verdict(
        Verdict(
            f"mining/{function} MINE step, batch {BATCH}",
            1000 * float(np.median(times)),
            TARGET_MS,
            "<=",
            " ms",
            spread=relative_spread(times),
            rounds=len(times),
            rounds_are="calls",
        )
    )
