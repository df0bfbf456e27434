"""The model pipeline on a CUDA device, in bfloat16 and float32, against the same checkpoint on the CPU in float32.

What CPU runs cannot show: a tensor left on the wrong device or in the wrong dtype between the vision tower, the
pruning methods, the in-LLM hooks and the LLM. Skipped where there is no CUDA device; benchmarks/gpu_suite.py runs
them on one (it selects the tests named cuda or device in the test files that ask for CUDA).
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fpcli.model import GenerationConfig, load_model
from fpcli.model.methods import is_in_llm, method_names, ratio_for

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

DEVICE = "cuda"
DTYPES = ("bfloat16", "float32")
# The lowest per-token cosine between CUDA's features and the CPU's float32 ones: float32 differs only by the
# kernels' summation order (and TF32 convolutions), bfloat16 by its 8-bit mantissa too.
MIN_COSINE = {"float32": 0.999, "bfloat16": 0.98}
TINY_OPTIONS = {"fastv": {"K": 1}, "sttm": {"layer": 1}}  # the tiny LLM has 2 decoder layers
QUESTION = "What is moving?"


def make_clip(frames: int, height: int = 24, width: int = 40, fps: float = 2.0) -> SimpleNamespace:
    rng = np.random.default_rng(0)
    return SimpleNamespace(path="clip.mp4", frames=rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8),
                           indices=np.arange(frames), timestamps=np.arange(frames) / fps, duration=frames / fps)


def lowest_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Lowest cosine similarity between matching tokens of two [T, N, D] feature tensors."""
    a, b = a.float().cpu().flatten(0, -2), b.float().cpu().flatten(0, -2)
    return float(torch.nn.functional.cosine_similarity(a, b, dim=-1).min())


@pytest.mark.parametrize("dtype", DTYPES)
def test_llava_every_method_on_cuda(tiny_video_dir, dtype):
    clip = make_clip(6)
    cpu = load_model(tiny_video_dir, device="cpu", dtype="float32")
    gpu = load_model(tiny_video_dir, device=DEVICE, dtype=dtype)
    features = gpu.encode_clip(clip)
    assert features.features.device.type == DEVICE and features.features.dtype == getattr(torch, dtype)
    assert lowest_cosine(features.features, cpu.encode_clip(clip).features) >= MIN_COSINE[dtype]
    generation = GenerationConfig(max_new_tokens=3)
    for method in method_names():
        ratio, options = ratio_for(method, 0.75), TINY_OPTIONS.get(method, {})
        got = gpu.answer(clip, QUESTION, ratio=ratio, method=method, prune_options=options, generation=generation)
        expected = cpu.answer(clip, QUESTION, ratio=ratio, method=method, prune_options=options, generation=generation)
        assert got.tokens.visual_before == expected.tokens.visual_before == 6 * 7 * 7, method
        if not is_in_llm(method) or method == "fastv":  # a count the ratio fixes (the others merge by similarity)
            assert got.tokens.visual_after == expected.tokens.visual_after, method
        assert 1 <= got.tokens.visual_after <= got.tokens.visual_before and got.tokens.generated == 3, method
        assert got.peak_memory_mb > 0 and got.prefill_tflops.after <= got.prefill_tflops.before, method


@pytest.mark.parametrize("dtype", DTYPES)
def test_qwen_forestprune_on_cuda(tiny_qwen25_dir, dtype):
    clip = make_clip(4)
    cpu = load_model(tiny_qwen25_dir, device="cpu", dtype="float32")
    gpu = load_model(tiny_qwen25_dir, device=DEVICE, dtype=dtype)
    features = gpu.encode_clip(clip)
    assert features.features.device.type == DEVICE and features.features.dtype == getattr(torch, dtype)
    assert lowest_cosine(features.features, cpu.encode_clip(clip).features) >= MIN_COSINE[dtype]
    generation = GenerationConfig(max_new_tokens=3)
    got = gpu.answer(clip, QUESTION, ratio=0.75, generation=generation)
    expected = cpu.answer(clip, QUESTION, ratio=0.75, generation=generation)
    assert got.to_dict()["tokens"]["visual_after"] == expected.to_dict()["tokens"]["visual_after"]
    assert got.temporal_groups == expected.temporal_groups == 2 and got.tokens.generated == 3
