"""One budget for all: at ratio r over N visual tokens every in-LLM method ends with exactly
max(1, round((1 - r) * N)) visual tokens (the last stage of `visual_in_llm`), on a tiny LLaVA-OneVision checkpoint
and tiny Qwen2.5-VL / Qwen3-VL ones with 4 decoder layers (the methods' default layers fit), whatever the ratio, the
frame count, the grid and how alike the frames are (alike frames make FrameFusion and STTM merge)."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_inllm_model import prompt_inputs
from test_qwen_inllm import ARCHS, make_clip, prepared

from fpcli.model import load_model
from fpcli.model.inllm.prefill import prefill_pruned
from fpcli.model.inllm.registry import in_llm_methods
from fpcli.model.qwen.inllm import qwen_prefill_pruned

IN_LLM_METHODS = tuple(name for name, method in in_llm_methods().items() if method.pre_budget is None)
PROPERTY = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def budget(percent: int, total: int) -> int:
    """max(1, round((1 - r) * N)) at r = percent / 100, halves up, in integers."""
    return max(1, ((100 - percent) * total + 50) // 100)


@pytest.fixture(scope="module")
def llava(tmp_path_factory: pytest.TempPathFactory):
    from fpcli.devtools.tiny_checkpoint import build_tiny_checkpoint

    return load_model(build_tiny_checkpoint(tmp_path_factory.mktemp("deep"), shape="tiny-deep"), device="cpu")


@pytest.fixture(scope="module")
def qwen(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from fpcli.devtools.tiny_qwen import build_tiny_qwen

    return {arch: load_model(build_tiny_qwen(tmp_path_factory.mktemp(arch), arch, text_layers=4), device="cpu")
            for arch in ARCHS}


def test_the_tiny_deep_checkpoint_has_four_decoder_layers(llava):
    assert llava.decoder_layers == 4


@PROPERTY
@given(method=st.sampled_from(IN_LLM_METHODS), percent=st.integers(0, 99), frames=st.integers(1, 6),
       grid=st.tuples(st.integers(2, 6), st.integers(2, 6)), repeats=st.integers(0, 5), seed=st.integers(0, 99))
def test_every_in_llm_method_ends_at_the_budget_on_llava(llava, method, percent, frames, grid, repeats, seed):
    dim = llava.model.config.text_config.hidden_size
    features = torch.randn(frames, grid[0] * grid[1], dim, generator=torch.Generator().manual_seed(seed))
    features[1 : 1 + repeats] = features[0]  # frames that repeat the first: merging material
    embeds, span = prompt_inputs(llava, features, grid)
    pruned = prefill_pruned(llava.model, embeds, span, percent / 100, method)
    total = frames * grid[0] * grid[1]
    assert pruned.visual_lengths[-1] == budget(percent, total) == pruned.kept_visual


@PROPERTY
@given(method=st.sampled_from(IN_LLM_METHODS), arch=st.sampled_from(ARCHS), percent=st.integers(0, 99),
       frames=st.integers(1, 6), width=st.sampled_from([16, 24, 40]), seed=st.integers(0, 99))
def test_every_in_llm_method_ends_at_the_budget_on_qwen(qwen, method, arch, percent, frames, width, seed):
    llm = qwen[arch]
    features, prompt, positions, _, _ = prepared(llm, make_clip(frames, seed=seed, width=width))
    total = features.features.shape[0] * features.features.shape[1]
    pruned = qwen_prefill_pruned(llm, features, prompt, positions, percent / 100, method)
    assert pruned.visual_lengths[-1] == budget(percent, total) == pruned.kept_visual
