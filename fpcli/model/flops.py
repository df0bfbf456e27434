"""Analytic prefill FLOPs of the language model, to show what pruning saves.

For a prompt of L tokens through a decoder with `layers` layers, hidden size d, q heads of size h_d (d_q = heads*h_d),
kv heads (d_kv = kv_heads*h_d) and MLP width f (gated: gate, up, down):
  linear  = 2 * L * layers * (d*d_q + 2*d*d_kv + d_q*d + 3*d*f)    one multiply-add = 2 FLOPs
  attn    = 2 * layers * d_q * L * (L + 1)                          QK^T and AV over the causal triangle,
                                                                    2 * 2 * d_q per (query, key) pair
  lm_head = 2 * d * vocab                                           prefill only needs the last position's logits
After in-LLM pruning layer i runs on L_i tokens: the linear and attention terms are summed per layer with L_i.
Norms, rotary embeddings, softmax and activations are ignored (well under 1% at these sizes).
The vision tower and projector are left out: pruning happens after them, so they cost the same either way.
"""

from __future__ import annotations

from typing import Sequence


def prefill_flops(text_config, seq_len: int) -> float:
    """FLOPs of one prefill forward pass over `seq_len` tokens (see the module docstring)."""
    return prefill_flops_per_layer(text_config, [seq_len] * text_config.num_hidden_layers)


def prefill_flops_per_layer(text_config, lengths: Sequence[int]) -> float:
    """FLOPs of one prefill whose layer i runs on `lengths[i]` tokens (in-LLM pruning shortens later layers).

    Each layer's attention is over its own tokens only: a pruned layer's KV cache holds just the survivors.
    """
    if len(lengths) != text_config.num_hidden_layers:
        raise ValueError(f"need one length per layer ({text_config.num_hidden_layers}), got {len(lengths)}")
    d = text_config.hidden_size
    heads = text_config.num_attention_heads
    kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
    head_dim = getattr(text_config, "head_dim", None) or d // heads
    d_q, d_kv = heads * head_dim, kv_heads * head_dim
    ffn = text_config.intermediate_size
    per_token = d * d_q + 2 * d * d_kv + d_q * d + 3 * d * ffn
    linear = sum(2 * n * per_token for n in lengths)
    attention = sum(2 * d_q * n * (n + 1) for n in lengths)
    lm_head = 2 * d * text_config.vocab_size
    return float(linear + attention + lm_head)


def prefill_tflops(text_config, seq_len: int) -> float:
    """`prefill_flops` in TFLOPs (1e12)."""
    return prefill_flops(text_config, seq_len) / 1e12
