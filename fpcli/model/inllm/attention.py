"""The last prompt token's attention row of one decoder layer, computed by hand.

Pruning by attention needs one row of the attention matrix: what the last prompt token pays every key. Asking the
attention implementation for its weights forces eager attention and materialises all L x L weights; instead this
recomputes the row from the layer's own projections (as FrameFusion does): the last token's query and all keys,
both rotated by RoPE with the tokens' position embeddings, grouped-query heads expanded, softmax in float32.
Cost O(L * d) per layer, so SDPA and flash attention stay on for the real forward pass.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _rotate_half(x: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def multimodal_rotary(layer, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    """The rotary embeddings [1, L, head_dim] a layer applies. transformers before 5.17 hands Qwen2.5-VL's layers
    one [3, 1, L, head_dim] table per position axis (time, height, width) and interleaves them inside attention by
    the config's mrope sections (its apply_multimodal_rotary_pos_emb); from 5.17 on, and every other model, they
    arrive combined."""
    if cos.dim() == 3:
        return cos, sin
    sections = list(layer.self_attn.config.rope_parameters["mrope_section"]) * 2

    def combine(table: Tensor) -> Tensor:
        return torch.cat([part[i % 3] for i, part in enumerate(table.split(sections, dim=-1))], dim=-1)

    return combine(cos), combine(sin)


def last_token_attention(layer, hidden: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Mean over heads of the last query's softmax attention over all L keys: [L] float32.

    layer: a Llama/Qwen2-style decoder layer (input_layernorm, self_attn.{q,k}_proj, head_dim, scaling; Qwen3's
    self_attn.{q,k}_norm where present); hidden: its input [1, L, D]; cos, sin: the tokens' rotary embeddings
    [1, L, head_dim] as the layer receives them (Qwen-VL: M-RoPE's, interleaved from the 3-D positions; see
    multimodal_rotary).
    """
    cos, sin = multimodal_rotary(layer, cos, sin)
    attn = layer.self_attn
    head_dim = attn.head_dim
    normed = layer.input_layernorm(hidden)  # [1, L, D]
    query = attn.q_proj(normed[:, -1:]).view(-1, head_dim)  # [H, hd], the last token only
    keys = attn.k_proj(normed).view(hidden.shape[1], -1, head_dim)  # [L, G, hd]
    if hasattr(attn, "q_norm"):  # Qwen3(-VL): each head's query and key RMS-normalised before RoPE
        query, keys = attn.q_norm(query), attn.k_norm(keys)
    keys = keys.transpose(0, 1)  # [G, L, hd]
    query = query * cos[0, -1] + _rotate_half(query) * sin[0, -1]
    keys = keys * cos[0] + _rotate_half(keys) * sin[0]
    groups = keys.shape[0]
    query = query.view(groups, -1, head_dim)  # [G, H/G, hd]: query heads sharing one key head
    scores = torch.matmul(query.float(), keys.float().transpose(1, 2)) * attn.scaling  # [G, H/G, L]
    return torch.softmax(scores, dim=-1).flatten(0, 1).mean(dim=0)  # [L]
