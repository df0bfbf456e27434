"""The LLM input after pruning: kept columns of the unpruned sequence, with their original M-RoPE positions.

The position ids of the full prompt come from the model's own `get_rope_index` (3 rows: temporal, height, width;
text tokens share one value on all three). Pruning drops the columns of the dropped video tokens, so every kept
token keeps the 3-D position it had in the unpruned video and the text after the video keeps its positions too.
Decoding continues at max(position) + 1, the rope delta of the unpruned prompt, not at the (shorter) cache length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fpcli.model.qwen.prompt import QwenPrompt, token_types


@dataclass
class QwenInput:
    """What one prefill takes."""

    inputs_embeds: Tensor  # [1, L', D]
    position_ids: Tensor  # LongTensor [3, 1, L']
    next_position: int  # position id of the first generated token
    visual_pos_masks: Tensor | None  # BoolTensor [1, L'] (Qwen3-VL DeepStack), True at the kept video tokens
    deepstack: list[Tensor] | None  # per DeepStack layer [K, D], the kept tokens only


def full_positions(model, prompt: QwenPrompt, grid_thw: Tensor, seconds_per_group: float | None) -> Tensor:
    """Position ids [3, L] of the unpruned prompt, from the model's `get_rope_index`."""
    extra = {} if seconds_per_group is None else {"second_per_grid_ts": torch.tensor([seconds_per_group])}
    positions, _ = model.model.get_rope_index(
        prompt.input_ids[None], mm_token_type_ids=token_types(prompt), video_grid_thw=grid_thw, **extra
    )
    return positions[:, 0]  # [3, L]


def kept_columns(prompt: QwenPrompt, keep: Tensor) -> Tensor:
    """BoolTensor [L]: text columns and the video columns of the kept flat indices (group*N + row*w + col)."""
    video_columns = prompt.video_mask.nonzero()[:, 0]  # [T'*N], in (group, row, col) order
    columns = ~prompt.video_mask
    columns[video_columns[keep.cpu()]] = True
    return columns


def assemble(
    embed_tokens,
    prompt: QwenPrompt,
    positions: Tensor,
    features: Tensor,
    keep: Tensor,
    deepstack: Tensor | None = None,
    kept: Tensor | None = None,
) -> QwenInput:
    """Text embeddings with the kept visual tokens in place, and their positions.

    features: [T', N, D] merged visual tokens; keep: LongTensor [K] ascending flat indices;
    deepstack: [T', N, layers, D] or None; kept: [K, D] a merging method's features of the kept tokens in the order
    of `keep` (PruneResult.features), None: features[keep]. A merged token takes its kept position's M-RoPE position
    and DeepStack features.
    """
    columns = kept_columns(prompt, keep)  # [L]
    device = features.device
    ids = prompt.input_ids.to(device)
    with torch.inference_mode():
        embeds = embed_tokens(ids[columns.to(device)])  # [L', D]
        video_here = prompt.video_mask[columns].to(device)  # [L'], K True
        flat = features.reshape(-1, features.shape[-1])  # [T'*N, D]
        embeds[video_here] = (flat[keep] if kept is None else kept).to(embeds.dtype)
    kept_positions = positions[:, columns]  # [3, L']
    layers = None
    if deepstack is not None:
        kept_deep = deepstack.reshape(-1, *deepstack.shape[2:])[keep]  # [K, layers, D]
        layers = [kept_deep[:, i] for i in range(kept_deep.shape[1])]
    return QwenInput(
        inputs_embeds=embeds[None],
        position_ids=kept_positions[:, None].to(device),
        next_position=int(positions.max()) + 1,
        visual_pos_masks=video_here[None] if deepstack is not None else None,
        deepstack=layers,
    )
