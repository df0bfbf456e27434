"""Device-aware clocks and peak memory: GPU work is timed when it finishes, not when it is queued."""

from __future__ import annotations

import resource
import sys
import time

import torch


def now(device: torch.device) -> float:
    """perf_counter() after the device's queued work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def reset_peak_memory(device: torch.device) -> None:
    """Start a new CUDA peak-memory window (the CPU peak RSS cannot be reset: it covers the whole process)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA max allocated since the last reset on GPU; the process's peak resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
