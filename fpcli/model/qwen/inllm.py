"""In-LLM pruning (fastv, framefusion, sttm) on Qwen2.5-VL and Qwen3-VL: one pruned prefill of a whole prompt.

    pruned = qwen_prefill_pruned(llm, features, prompt, positions, ratio=0.9, method="fastv", options={"K": 2})
    out = decode(llm.lm, pruned.last_logits, pruned.cache, config, eos_ids, next_position=pruned.next_position)

The prompt enters the LLM unpruned (every video token at its M-RoPE position from `get_rope_index`) and
fpcli.model.inllm's hooks act on the decoder layers as they do for LLaVA, with what differs for Qwen-VL:
  - the video tokens are the prompt's video columns, T' temporal groups of an h x w merged grid in (group, row, col)
    order; Qwen3-VL's timestamps and vision start/end tokens between groups are text to every method;
  - the model is called with the 3-D position ids [3, 1, L]; each decoder layer receives rotary embeddings already
    combined from the three rows (its mrope sections), so survivors keep their 3-D positions by the same indexing
    of cos/sin, and the hand-computed attention row (with Qwen3-VL's q/k norms) uses them unchanged;
  - Qwen3-VL's DeepStack features are added after the first layers to the surviving visual tokens only;
  - decoding continues at the unpruned prompt's largest position + 1 (its rope delta), not at its length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from fpcli.model.clip_features import ClipFeatures
from fpcli.model.inllm.prefill import prefill_pruned
from fpcli.model.inllm.span import InLLMPrefill
from fpcli.model.qwen.positions import assemble
from fpcli.model.qwen.prompt import QwenPrompt

if TYPE_CHECKING:
    from fpcli.model.qwen.model import QwenVideoLLM


@dataclass(frozen=True)
class VideoColumns:
    """The video tokens of a Qwen-VL prompt as fpcli.model.inllm sees a visual span: `frames` (T' temporal groups)
    x grid (h, w) merged tokens at the True columns of `video_mask`, in (group, row, col) order."""

    video_mask: Tensor  # BoolTensor [L]
    frames: int
    grid: tuple[int, int]

    @property
    def tokens(self) -> int:
        return self.frames * self.grid[0] * self.grid[1]

    def visual_index(self, seq_len: int, device: torch.device | str = "cpu") -> Tensor:
        """For each of the prompt's positions its flat visual index t*h*w + y*w + x, or -1: LongTensor [L]."""
        if seq_len != len(self.video_mask) or int(self.video_mask.sum()) != self.tokens:
            raise ValueError(f"the prompt has {int(self.video_mask.sum())} video tokens in {len(self.video_mask)}, "
                             f"not {self.tokens} in {seq_len}")
        mask = self.video_mask.to(device)
        index = torch.full((seq_len,), -1, dtype=torch.long, device=device)
        index[mask] = torch.arange(self.tokens, device=device)
        return index


def in_llm_detail(method: str) -> str:
    """What a context error says of a prompt whose every video token enters the LLM."""
    return f": none before the LLM, {method} prunes inside it"


def qwen_prefill_pruned(llm: QwenVideoLLM, features: ClipFeatures, prompt: QwenPrompt, positions: Tensor,
                        ratio: float, method: str, options: dict | None = None) -> InLLMPrefill:
    """Prefill the unpruned `prompt` about `features` ([T', h*w, D], Qwen3-VL's extras["deepstack"]
    [T', h*w, layers, D]) at `positions` [3, L] (full_positions) with an in-LLM method (see the module docs)."""
    tokens = features.features.to(llm.device)  # [T', N, D]
    deep = features.extras.get("deepstack")
    every = torch.arange(tokens.shape[0] * tokens.shape[1], device=llm.device)  # [T'*N]: all enter the LLM
    batch = assemble(llm.model.get_input_embeddings(), prompt, positions, tokens, every,
                     None if deep is None else deep.to(llm.device))  # fmt: skip
    span = VideoColumns(prompt.video_mask, tokens.shape[0], tuple(features.grid))
    return prefill_pruned(llm.model, batch.inputs_embeds, span, ratio, method, options,
                          next_position=batch.next_position, deepstack=batch.deepstack or (),
                          position_ids=batch.position_ids)  # fmt: skip
