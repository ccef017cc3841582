"""Cost of one SHaSaM-MINE step: batch 128, 128-d embeddings, 8 cells, 4 positives and 4 negatives per anchor set.

Run with ``pytest tests/benchmarks --benchmark-only`` (the default configuration skips benchmarks).
"""

import pytest
import torch

from fairfacebench.methods.submodular import FUNCTIONS, anchor_sets, mine_hard_samples, similarity_kernel

BATCH, DIM, BUDGET = 128, 128, 4


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(BATCH, DIM, generator=g)
    y, a = torch.randint(0, 2, (BATCH,), generator=g), torch.randint(0, 4, (BATCH,), generator=g)
    return similarity_kernel(emb, 0.5), anchor_sets(y, a)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_bench_mine_hard_samples(benchmark, batch, function):
    kernel, sets = batch
    mined = benchmark(mine_hard_samples, kernel, sets, BUDGET, BUDGET, function)
    assert mined.pos_mask.all() and mined.neg_mask.all()
