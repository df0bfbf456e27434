"""What `--dtype auto` means on a CPU: bfloat16 where the CPU computes it natively, float32 elsewhere.

Measured (benchmarks/bench_dtype.py, README "CPU dtype"): on a CPU with AVX512-BF16, `forestprune ask` at
llava-onevision-qwen2-0.5b's real shape ran about 2x faster end to end in bfloat16 than in float32 (the vision tower
most of it), its features at cosine similarity >= 0.9999 to the float32 ones. Without native bf16 instructions
PyTorch emulates bfloat16 matmuls through float32 conversions, which is slower than float32 itself, so there
float32 stays. x86 CPUs say it in two ways: AVX512-BF16 (Cooper Lake, Sapphire Rapids, AMD Zen 4 on) and AMX (Intel
Sapphire Rapids on); PyTorch reports both (torch.cpu._is_avx512_bf16_supported / _is_amx_tile_supported), and where
this PyTorch has no such function Linux's /proc/cpuinfo flags answer.

$FORESTPRUNE_CPU_DTYPE (float32 or bfloat16) pins what auto means on the CPU: for a CPU where the measurement comes
out otherwise, and for the tests, whose exact references must not depend on the machine that runs them.
Torch is imported inside the functions: the CLI's option declarations read AUTO_HELP without it.
"""

from __future__ import annotations

import os
from pathlib import Path

AUTO_HELP = ("auto: bfloat16 on CUDA and on CPUs with native bfloat16 (AVX512-BF16 or AMX), else float32 "
             "($FORESTPRUNE_CPU_DTYPE pins the CPU's).")
CPU_DTYPE_ENV = "FORESTPRUNE_CPU_DTYPE"
CPU_DTYPES = ("float32", "bfloat16")
_TORCH_CHECKS = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
_CPUINFO_FLAGS = {"avx512_bf16", "amx_bf16"}
_CPUINFO = Path("/proc/cpuinfo")


def native_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions that PyTorch's CPU kernels use (AVX512-BF16 or AMX)."""
    import torch

    checks = [getattr(torch.cpu, name, None) for name in _TORCH_CHECKS]
    if any(check is not None for check in checks):
        return any(check() for check in checks if check is not None)
    try:
        flags = set(_CPUINFO.read_text().split())
    except OSError:
        return False
    return bool(flags & _CPUINFO_FLAGS)


def cpu_auto_dtype():
    """The dtype `--dtype auto` loads a model in on the CPU: $FORESTPRUNE_CPU_DTYPE when set, else bfloat16 with
    native bf16 and float32 without. ValueError for a pinned value that is not one of CPU_DTYPES."""
    import torch

    pinned = os.environ.get(CPU_DTYPE_ENV, "")
    if pinned:
        if pinned not in CPU_DTYPES:
            raise ValueError(f"{CPU_DTYPE_ENV} must be {' or '.join(CPU_DTYPES)}, got {pinned!r}")
        return getattr(torch, pinned)
    return torch.bfloat16 if native_bf16() else torch.float32
