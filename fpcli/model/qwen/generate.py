"""Prefill and decode for Qwen-VL with explicit M-RoPE positions (and DeepStack features for Qwen3-VL).

The language model is called directly (`model.model.language_model` + `lm_head`), not the wrapper's forward: the
wrapper recomputes positions from input_ids and would add DeepStack features only for pixels it encodes itself.
Greedy and sampled picking are `fpcli.model.generate`'s, so a Qwen answer decodes by the same rules.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fpcli.model.generate import GenerationConfig, Generated, _Picker
from fpcli.model.qwen.positions import QwenInput
from fpcli.model.timing import now


@torch.inference_mode()
def prefill(model, batch: QwenInput, cache=None) -> tuple[Tensor, object]:
    """One pass over `batch` (after what `cache` holds): (last logits [1, V], the cache)."""
    extra = {}
    if batch.deepstack is not None:
        extra = {"visual_pos_masks": batch.visual_pos_masks, "deepstack_visual_embeds": batch.deepstack}
    out = model.model.language_model(
        inputs_embeds=batch.inputs_embeds, position_ids=batch.position_ids, cache=cache, use_cache=True, **extra
    )
    return model.lm_head(out.last_hidden_state[:, -1]), out.cache  # [1, V]


@torch.inference_mode()
def decode(model, logits: Tensor, cache, next_position: int, config: GenerationConfig, eos_ids: set[int]) -> Generated:
    """Tokens from the prefill's last logits [1, V] on, at positions next_position, next_position + 1, ...

    `prefill_s` is the time to pick the first token (the host sync that ends the prefill)."""
    device = logits.device
    pick = _Picker(config, device)
    start = now(device)
    token = pick(logits)  # [1]
    ids = [int(token)]
    picked = now(device)
    embed = model.get_input_embeddings()
    while len(ids) < config.max_new_tokens and ids[-1] not in eos_ids:
        position = torch.full((3, 1, 1), next_position + len(ids) - 1, device=device)
        out = model.model.language_model(inputs_embeds=embed(token[:, None]), position_ids=position, cache=cache,
                                          use_cache=True)  # fmt: skip
        cache = out.cache
        token = pick(model.lm_head(out.last_hidden_state[:, -1]))
        ids.append(int(token))
    return Generated(ids=ids, prefill_s=picked - start, generate_s=now(device) - picked)
