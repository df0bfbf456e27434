"""The in-LLM methods' entry point: a validated prefill with the method's reducer on the decoder layers.

    prefill_pruned(model, inputs_embeds, span, ratio=0.9, method="fastv", options={"K": 2}) -> InLLMPrefill

The method comes from the registry (fpcli.model.inllm.registry); everything is checked before any model work.
"""

from __future__ import annotations

from torch import Tensor

from fpcli.model.inllm.hooks import Span, decoder_layers, run_pruned_prefill
from fpcli.model.inllm.registry import InLLMPlan, check_layers, method_of, validate
from fpcli.model.inllm.span import InLLMPrefill


def prefill_pruned(
    model, inputs_embeds: Tensor, visual: Span, ratio: float, method: str, options: dict | None = None, **run
) -> InLLMPrefill:
    """Prefill inputs_embeds [1, L, D] (unpruned visual block described by `visual`) with an in-LLM method.

    Returns the last position's logits, a KV cache holding only the surviving tokens, the position id the first
    decoded token takes (L, or `run`'s next_position), and the sequence / visual lengths entering every decoder
    layer. `run`: Qwen-VL's next_position, deepstack and position_ids (see hooks.run_pruned_prefill).
    """
    values = validate(ratio, method, **(options or {}))
    layers = len(decoder_layers(model))
    check_layers(method, values, layers)
    reducer = method_of(method).build(float(ratio), InLLMPlan(layers, visual.frames, visual.grid), **values)
    return run_pruned_prefill(model, inputs_embeds, visual, reducer, method, values, **run)
