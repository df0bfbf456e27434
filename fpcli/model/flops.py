"""Analytic prefill FLOPs of the language model, to show what pruning saves.

For a prompt of L tokens through a decoder with `layers` layers, hidden size d, q heads of size h_d (d_q = heads*h_d),
kv heads (d_kv = kv_heads*h_d) and MLP width f (gated: gate, up, down):
  linear  = 2 * L * layers * (d*d_q + 2*d*d_kv + d_q*d + 3*d*f)    one multiply-add = 2 FLOPs
  attn    = 2 * layers * d_q * L * (L + 1)                          QK^T and AV over the causal triangle,
                                                                    2 * 2 * d_q per (query, key) pair
  lm_head = 2 * d * vocab                                           prefill only needs the last position's logits
Norms, rotary embeddings, softmax and activations are ignored (well under 1% at these sizes).
The vision tower and projector are left out: pruning happens after them, so they cost the same either way.
"""

from __future__ import annotations


def prefill_flops(text_config, seq_len: int) -> float:
    """FLOPs of one prefill forward pass over `seq_len` tokens (see the module docstring)."""
    d = text_config.hidden_size
    layers = text_config.num_hidden_layers
    heads = text_config.num_attention_heads
    kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
    head_dim = getattr(text_config, "head_dim", None) or d // heads
    d_q, d_kv = heads * head_dim, kv_heads * head_dim
    ffn = text_config.intermediate_size
    per_token = d * d_q + 2 * d * d_kv + d_q * d + 3 * d * ffn
    linear = 2 * seq_len * layers * per_token
    attention = 2 * layers * d_q * seq_len * (seq_len + 1)
    lm_head = 2 * d * text_config.vocab_size
    return float(linear + attention + lm_head)


def prefill_tflops(text_config, seq_len: int) -> float:
    """`prefill_flops` in TFLOPs (1e12)."""
    return prefill_flops(text_config, seq_len) / 1e12
