"""`QwenLM`: a Qwen-VL checkpoint's language model, called the way `fpcli.model.generate` calls a causal LM.

`prefill` and `decode` are the project's (same picking rules, timing, cache handling); they get this instead of the
ForConditionalGeneration wrapper, whose forward recomputes positions from input_ids and adds DeepStack features
only for pixels it encodes itself. Here positions are always explicit: the prompt's columns keep the M-RoPE
positions of the unpruned prompt ([3, 1, L]), a decoded token gets `next_position` on all three rows ([1, 1] from
`decode`), and Qwen3-VL's prefix prefill passes the kept tokens' DeepStack features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fpcli.model.generate import cache_name


@dataclass
class LMOutput:
    logits: Tensor  # [1, logits_to_keep, V]
    cache: object


class QwenLM:
    """`model.model.language_model` + `lm_head` of a loaded Qwen2.5-VL / Qwen3-VL (a view, no copy)."""

    def __init__(self, model) -> None:
        self.model = model

    @torch.inference_mode()
    def forward(
        self,
        *,
        input_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        position_ids: Tensor | None = None,
        cache=None,
        use_cache: bool = True,
        logits_to_keep: int = 1,
        visual_pos_masks: Tensor | None = None,
        deepstack_visual_embeds: list[Tensor] | None = None,
    ) -> LMOutput:
        """inputs_embeds [1, L, D] (or input_ids [1, L]) at position_ids [3, 1, L] or [1, L] (text: the same id on
        every row); visual_pos_masks [1, L] and deepstack_visual_embeds (per layer [K, D]) only for Qwen3-VL."""
        if inputs_embeds is None:
            inputs_embeds = self.model.get_input_embeddings()(input_ids)
        if position_ids is not None and position_ids.ndim == 2:
            position_ids = position_ids[None].expand(3, -1, -1)  # [3, 1, L]
        deepstack = {}
        if deepstack_visual_embeds is not None:
            deepstack = {"visual_pos_masks": visual_pos_masks, "deepstack_visual_embeds": deepstack_visual_embeds}
        language_model = self.model.model.language_model
        kv = cache_name(language_model)  # `cache` in recent transformers, `past_key_values` in 5.17
        out = language_model(inputs_embeds=inputs_embeds, position_ids=position_ids, use_cache=use_cache,
                             **{kv: cache}, **deepstack)  # fmt: skip
        return LMOutput(self.model.lm_head(out.last_hidden_state[:, -logits_to_keep:]), getattr(out, kv))

    __call__ = forward
