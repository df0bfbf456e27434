"""Vision-tower extras: what the feature layer's attention says about each patch, for methods that use it.

`vision_attention` [F, L]: the attention each patch receives in the feature layer, mean over heads and queries
(VisionZip's SigLIP ports: SigLIP has no CLS token whose attention row could rank the patches);
`vision_keys` [F, L, Dk]: that layer's keys, mean over heads (the ports' merge metric), Dk = head dim.
Both are computed by hand from the queries and keys that two forward hooks on the layer's q/k projections see
during one tower call, so the tower keeps its attention implementation (SDPA, flash) and never materialises
attention weights for all layers. The extra work is one Q K^T and softmax per head of one layer: about 0.2% of
SigLIP-so400m's forward (see docs/methods.md).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor, nn

from fpcli.model.errors import ModelError


def feature_layer_index(feature_layer: int | list[int], num_layers: int) -> int:
    """The encoder layer whose output is hidden_states[feature_layer]; the deepest one for a list of layers."""
    layers = [feature_layer] if isinstance(feature_layer, int) else list(feature_layer)
    index = max(layer % (num_layers + 1) - 1 for layer in layers)  # hidden_states[0] is the embeddings
    if index < 0:
        raise ModelError("vision_feature_layer 0 is the patch embeddings: no attention layer to take extras from")
    return index


def encoder_layers(tower: nn.Module) -> nn.ModuleList:
    """SigLIP's encoder layers (transformers 5 nests no `vision_model`; a tower saved that way still works)."""
    return getattr(tower, "vision_model", tower).encoder.layers


@contextlib.contextmanager
def capture_queries_keys(layer: nn.Module) -> Iterator[dict[str, Tensor]]:
    """While active, the dict holds the last outputs of `layer`'s q and k projections ([F, L, C] each).

    The hooks are removed on exit, also when the tower call fails, so the model is unchanged afterwards.
    """
    captured: dict[str, Tensor] = {}
    attention = layer.self_attn
    handles = [
        attention.q_proj.register_forward_hook(lambda _module, _args, out: captured.__setitem__("queries", out)),
        attention.k_proj.register_forward_hook(lambda _module, _args, out: captured.__setitem__("keys", out)),
    ]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def attention_received(queries: Tensor, keys: Tensor, scale: float) -> Tensor:
    """queries, keys [F, H, L, Dh] -> [F, L] float32: softmax(q k^T * scale) averaged over heads and queries.

    One head at a time, so the transient is [F, L, L] rather than [F, H, L, L] (68 MB for 32 SigLIP frames).
    """
    frames, heads, length, _ = queries.shape
    total = queries.new_zeros(frames, length, dtype=torch.float32)  # [F, L]
    for head in range(heads):
        scores = queries[:, head].float() @ keys[:, head].float().transpose(1, 2)  # [F, L, L]
        total += torch.softmax(scores * scale, dim=-1).sum(dim=1)
    return total / (heads * length)


def layer_extras(layer: nn.Module, captured: dict[str, Tensor]) -> dict[str, Tensor]:
    """From the captured projections of `layer`: vision_attention [F, L] float32, vision_keys [F, L, Dh]."""
    attention = layer.self_attn
    frames, length, width = captured["queries"].shape
    head_dim = attention.head_dim
    shape = (frames, length, width // head_dim, head_dim)
    queries = captured["queries"].view(shape).transpose(1, 2)  # [F, H, L, Dh]
    keys = captured["keys"].view(shape).transpose(1, 2)  # [F, H, L, Dh]
    return {"vision_attention": attention_received(queries, keys, attention.scale), "vision_keys": keys.mean(dim=1)}
