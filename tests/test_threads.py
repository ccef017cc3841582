"""A run's `threads` governs every thread pool it computes with, not only torch's."""

import os

import faiss  # noqa: F401  (its OpenMP pool is one of those limited)
import pytest
import torch
from threadpoolctl import threadpool_info

from fairfacebench.threads import THREAD_ENV, compute_threads


def pools() -> list[tuple[str, int]]:
    return sorted((info["internal_api"], info["num_threads"]) for info in threadpool_info())


@pytest.mark.parametrize("n", [1, 2])
def test_compute_threads_sets_torch_blas_openmp_and_the_variables_then_restores_them(n):
    before = (torch.get_num_threads(), pools(), {name: os.environ.get(name) for name in THREAD_ENV})
    assert {api for api, _ in before[1]} >= {"openblas", "openmp"}  # numpy's BLAS and an OpenMP runtime are loaded
    with compute_threads(n):
        assert torch.get_num_threads() == n
        # OpenBLAS cannot grow past the pool it started with (a library loaded under OMP_NUM_THREADS=1 stays at 1),
        # so above one thread the pools are only bounded; at one thread, the default, every pool is at one.
        assert all(threads == 1 if n == 1 else threads <= n for _, threads in pools()), pools()
        assert all(os.environ[name] == str(n) for name in THREAD_ENV)
    assert (torch.get_num_threads(), pools(), {name: os.environ.get(name) for name in THREAD_ENV}) == before


def test_compute_threads_restores_everything_when_the_run_raises():
    before = (torch.get_num_threads(), pools(), os.environ.get("OMP_NUM_THREADS"))
    with pytest.raises(RuntimeError, match="planted"), compute_threads(3):
        raise RuntimeError("planted")
    assert (torch.get_num_threads(), pools(), os.environ.get("OMP_NUM_THREADS")) == before
