"""Cost of one SHaSaM-MINE step: batch 128, 128-d embeddings, 4 positives and 4 negatives per anchor.

Run with ``pytest tests/benchmarks --benchmark-only`` (the default configuration skips benchmarks).
"""

import pytest
import torch

from fairfacebench.methods.submodular import FUNCTIONS, mine_hard_samples

BATCH, DIM, BUDGET = 128, 128, 4


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(BATCH, DIM, generator=g)
    return emb, torch.randint(0, 2, (BATCH,), generator=g), torch.randint(0, 4, (BATCH,), generator=g)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_bench_mine_hard_samples(benchmark, batch, function):
    emb, y, a = batch
    mined = benchmark(mine_hard_samples, emb, y, a, BUDGET, BUDGET, function)
    assert mined.pos_mask.all() and mined.neg_mask.all()
