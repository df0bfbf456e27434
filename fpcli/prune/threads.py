"""Pruning on CPU runs with one intra-op thread.

Pruning is many small tensor operations (a similarity here, a top-k there, on a few thousand tokens): torch's
threads cost more to wake and join than they save, and on a machine whose cores are busy they wait for a core.
Measured with benchmarks/bench_threads.py on a 2-core machine at load 7 (README, Benchmarks): ForestPrune keeping
256 of 8x196 tokens took 0.23 s on one thread and 2.37 s on two, while the vision tower was about as fast either
way (6.8 s and 8.0 s). So the pruning step alone is pinned to one thread; the tower and the LLM keep the process's
setting (torch's default, or `forestprune --threads N`). CUDA tensors are not affected.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

PRUNE_THREADS = 1


@contextlib.contextmanager
def prune_threads(device: torch.device) -> Iterator[None]:
    """Inside the block, torch uses PRUNE_THREADS intra-op threads when `device` is the CPU; restored after."""
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(PRUNE_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
