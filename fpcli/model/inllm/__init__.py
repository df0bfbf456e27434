"""Visual-token pruning inside the LLM (FastV, FrameFusion, STTM) through removable decoder-layer hooks.

    span = VisualSpan(start=14, frames=8, grid=(14, 14), layout="onevision")
    out = prefill_pruned(llm.model, inputs_embeds, span, ratio=0.9, method="fastv")
    answer = decode(llm.model, out.last_logits, out.cache, config, eos_ids, next_position=out.next_position)

Names and options import eagerly (torch-free); the torch-backed names on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from fpcli.model.inllm.options import IN_LLM_METHODS, options_of, validate

if TYPE_CHECKING:
    from fpcli.model.inllm.registry import prefill_pruned
    from fpcli.model.inllm.span import InLLMPrefill, VisualSpan

_LAZY = {"prefill_pruned": "fpcli.model.inllm.registry", "InLLMPrefill": "fpcli.model.inllm.span",
         "VisualSpan": "fpcli.model.inllm.span"}

__all__ = ["IN_LLM_METHODS", "InLLMPrefill", "VisualSpan", "options_of", "prefill_pruned", "validate"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fpcli.model.inllm' has no attribute {name!r}")
