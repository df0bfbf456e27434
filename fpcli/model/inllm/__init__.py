"""Visual-token pruning inside the LLM (FastV, FrameFusion, STTM) through removable decoder-layer hooks.

    span = VisualSpan(start=14, frames=8, grid=(14, 14), layout="onevision")
    out = prefill_pruned(llm.model, inputs_embeds, span, ratio=0.9, method="fastv")
    answer = decode(llm.model, out.last_logits, out.cache, config, eos_ids, next_position=out.next_position)
"""

from fpcli.model.inllm.registry import IN_LLM_METHODS, options_of, prefill_pruned, validate
from fpcli.model.inllm.span import InLLMPrefill, VisualSpan

__all__ = ["IN_LLM_METHODS", "InLLMPrefill", "VisualSpan", "options_of", "prefill_pruned", "validate"]
