"""A run's compute threads, in every library it computes with.

A run spec's `threads` is part of its run id, so it must be the thread count
the run's numbers were computed with.  torch's `set_num_threads` covers torch
only: numpy's BLAS (OpenBLAS) and faiss's OpenMP keep their own pools, sized
by the CPU count or by OMP_NUM_THREADS.  They differ by where a run computes:
a local worker process has one thread per core there, a Ray task has
OMP_NUM_THREADS=1 (Ray sets it), and a BLAS product or a faiss search
split over another number of threads may round differently in the last bit,
enough to move a sample across a threshold (a near-duplicate cosine, a
pseudo-label's confidence).  `compute_threads` sets all of them to the run's
count: the pools already loaded through threadpoolctl, and the environment
variables a library loaded later reads when it starts.  Such a library keeps
that count as its ceiling in this process (OpenBLAS cannot grow its pool), so
a process that runs specs with different `threads` may compute a later run
with fewer: a grid has one `threads` for all its runs, and worker processes
are fresh.
"""

from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from typing import Iterator

import torch
from threadpoolctl import threadpool_limits

# Read by OpenMP, OpenBLAS and MKL when they load: a library the run imports for the first time starts with these.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def compute_threads(n: int) -> Iterator[None]:
    """Torch's intra-op threads, the loaded BLAS and OpenMP pools and the thread variables all at `n` for one run;
    restored afterwards in this process."""
    torch_before = torch.get_num_threads()
    env_before = {name: os.environ.get(name) for name in THREAD_ENV}
    with ExitStack() as restore:
        torch.set_num_threads(n)
        restore.callback(torch.set_num_threads, torch_before)
        os.environ.update({name: str(n) for name in THREAD_ENV})
        restore.callback(_restore_env, env_before)
        restore.enter_context(threadpool_limits(limits=n))
        yield


def _restore_env(before: dict[str, str | None]) -> None:
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
