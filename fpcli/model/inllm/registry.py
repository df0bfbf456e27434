"""The in-LLM methods' entry point: a validated prefill with the method's reducer on the decoder layers.

    prefill_pruned(model, inputs_embeds, span, ratio=0.9, method="fastv", options={"K": 2}) -> InLLMPrefill

Names, options and `validate` are in fpcli.model.inllm.options; everything is checked before any model work.
"""

from __future__ import annotations

from torch import Tensor

from fpcli.model.inllm.fastv import FastV
from fpcli.model.inllm.framefusion import FrameFusion
from fpcli.model.inllm.hooks import Span, decoder_layers, run_pruned_prefill
from fpcli.model.inllm.options import validate
from fpcli.model.inllm.span import InLLMPrefill
from fpcli.model.inllm.sttm import STTM


def check_for_model(model, method: str, values: dict) -> None:
    """ValueError when a validated option names a decoder layer `model` does not have."""
    layers = len(decoder_layers(model))
    for name in {"fastv": ("K",), "sttm": ("layer",)}.get(method, ()):
        if values[name] >= layers:
            raise ValueError(f"option {name!r} of {method} must be below the model's {layers} decoder layers, "
                             f"got {values[name]}")


def prefill_pruned(
    model, inputs_embeds: Tensor, visual: Span, ratio: float, method: str, options: dict | None = None, **run
) -> InLLMPrefill:
    """Prefill inputs_embeds [1, L, D] (unpruned visual block described by `visual`) with an in-LLM method.

    Returns the last position's logits, a KV cache holding only the surviving tokens, the position id the first
    decoded token takes (L), and the sequence / visual lengths entering every decoder layer. `run`: Qwen-VL's
    next_position, deepstack and position_ids (see hooks.run_pruned_prefill).
    """
    values = validate(ratio, method, **(options or {}))
    check_for_model(model, method, values)
    ratio = float(ratio)
    if method == "fastv":
        reducer = FastV(ratio, **values)
    elif method == "framefusion":
        patches = visual.grid[0] * visual.grid[1]
        reducer = FrameFusion(ratio, layers=len(decoder_layers(model)), patches=patches, **values)
    else:
        reducer = STTM(ratio, grid=visual.grid, **values)
    return run_pruned_prefill(model, inputs_embeds, visual, reducer, method, values, **run)
