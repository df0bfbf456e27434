"""`--dtype auto` on the CPU (fpcli.model.cpu_dtype): bfloat16 where the CPU has native bf16, else float32."""

import pytest
import torch

from fpcli.model import cpu_dtype
from fpcli.model.checkpoint import resolve_dtype

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def unpinned(monkeypatch):
    monkeypatch.delenv(cpu_dtype.CPU_DTYPE_ENV, raising=False)
    return monkeypatch


@pytest.mark.parametrize(("native", "expected"), [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_on_the_cpu_follows_native_bf16(unpinned, native, expected):
    unpinned.setattr(cpu_dtype, "native_bf16", lambda: native)
    assert resolve_dtype("auto", CPU) == expected
    assert resolve_dtype("auto", CUDA) == torch.bfloat16  # CUDA does not ask the CPU
    assert resolve_dtype("float32", CPU) == torch.float32 and resolve_dtype("bfloat16", CPU) == torch.bfloat16


def test_the_environment_pins_the_cpu_dtype(unpinned):
    unpinned.setattr(cpu_dtype, "native_bf16", lambda: True)
    unpinned.setenv(cpu_dtype.CPU_DTYPE_ENV, "float32")
    assert resolve_dtype("auto", CPU) == torch.float32
    unpinned.setattr(cpu_dtype, "native_bf16", lambda: False)
    unpinned.setenv(cpu_dtype.CPU_DTYPE_ENV, "bfloat16")
    assert resolve_dtype("auto", CPU) == torch.bfloat16
    unpinned.setenv(cpu_dtype.CPU_DTYPE_ENV, "fp16")
    with pytest.raises(ValueError, match=r"^FORESTPRUNE_CPU_DTYPE must be float32 or bfloat16, got 'fp16'$"):
        resolve_dtype("auto", CPU)


@pytest.mark.parametrize(
    ("torch_says", "cpuinfo", "expected"),
    [
        ({"_is_avx512_bf16_supported": True, "_is_amx_tile_supported": False}, "", True),
        ({"_is_avx512_bf16_supported": False, "_is_amx_tile_supported": True}, "", True),
        ({"_is_avx512_bf16_supported": False, "_is_amx_tile_supported": False}, "flags : avx512_bf16", False),
        ({}, "flags\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni", True),  # no torch helper: /proc/cpuinfo
        ({}, "flags\t: fpu sse2 avx2 amx_bf16 amx_tile", True),
        ({}, "flags\t: fpu sse2 avx2 avx512f avx512_vnni", False),
    ],
)
def test_native_bf16_asks_torch_then_cpuinfo(monkeypatch, tmp_path, torch_says, cpuinfo, expected):
    for name in cpu_dtype._TORCH_CHECKS:
        if name in torch_says:
            monkeypatch.setattr(torch.cpu, name, lambda value=torch_says[name]: value, raising=False)
        else:
            monkeypatch.delattr(torch.cpu, name, raising=False)
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    monkeypatch.setattr(cpu_dtype, "_CPUINFO", tmp_path / "cpuinfo")
    assert cpu_dtype.native_bf16() is expected


def test_no_cpuinfo_means_float32(monkeypatch, tmp_path):
    for name in cpu_dtype._TORCH_CHECKS:
        monkeypatch.delattr(torch.cpu, name, raising=False)
    monkeypatch.setattr(cpu_dtype, "_CPUINFO", tmp_path / "missing")
    assert cpu_dtype.native_bf16() is False
