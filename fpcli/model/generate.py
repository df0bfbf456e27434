"""Decoding from `inputs_embeds`: one timed prefill pass, then token-by-token generation with the KV cache.

The loop is ours rather than `model.generate` so prefill (time to first token) and generation are timed
separately. Greedy decoding picks the argmax exactly as `generate(do_sample=False)` does (the equivalence test
checks it); with a temperature > 0 tokens are sampled from softmax(logits / temperature) with a seeded generator,
without top-k/top-p truncation or repetition penalty.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import Tensor

from fpcli.model.timing import now


@dataclass
class GenerationConfig:
    """How to decode: `temperature=0` is greedy; `seed` makes sampling reproducible."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not self.temperature >= 0:  # also rejects NaN
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}")


@dataclass
class Generated:
    ids: list[int]
    prefill_s: float
    generate_s: float


def cache_name(model) -> str:
    """The KV cache's forward keyword and output attribute: `cache` in recent transformers, else past_key_values."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class _Picker:
    def __init__(self, config: GenerationConfig, device: torch.device):
        self.temperature = config.temperature
        self.generator = None
        if config.temperature > 0:
            self.generator = torch.Generator(device=device).manual_seed(config.seed)

    def __call__(self, logits: Tensor) -> Tensor:  # logits [1, V] -> token [1]
        if self.generator is None:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        return torch.multinomial(probs, num_samples=1, generator=self.generator)[:, 0]


@torch.inference_mode()
def generate(model, inputs_embeds: Tensor, config: GenerationConfig, eos_ids: set[int]) -> Generated:
    """Decode up to `config.max_new_tokens` tokens after inputs_embeds [1, L, D]; stops after an EOS token."""
    device = inputs_embeds.device
    name = cache_name(model)
    pick = _Picker(config, device)
    start = now(device)
    out = model(inputs_embeds=inputs_embeds, use_cache=True, logits_to_keep=1)
    token = pick(out.logits[:, -1])  # [1]
    ids = [int(token)]  # int() waits for the GPU, so the prefill clock below is honest
    prefilled = now(device)
    while len(ids) < config.max_new_tokens and ids[-1] not in eos_ids:
        cache = getattr(out, name)
        out = model(input_ids=token[:, None], use_cache=True, logits_to_keep=1, **{name: cache})
        token = pick(out.logits[:, -1])
        ids.append(int(token))
    return Generated(ids=ids, prefill_s=prefilled - start, generate_s=now(device) - prefilled)


@torch.inference_mode()
def decode(
    model, last_logits: Tensor, cache, config: GenerationConfig, eos_ids: set[int], *, next_position: int | None = None
) -> Generated:
    """Decode after a prefill that returned `last_logits` [1, V] and `cache`; stops after an EOS token.

    next_position: the position id of the first decoded token. Give it when the cache holds fewer tokens than the
    prompt had positions (after in-LLM pruning); None continues at the cache's length. prefill_s is 0 (the caller
    timed its prefill).
    """
    device = last_logits.device
    name = cache_name(model)
    pick = _Picker(config, device)
    start = now(device)
    token = pick(last_logits)  # [1]
    ids = [int(token)]
    position = cache.get_seq_length() if next_position is None else next_position
    while len(ids) < config.max_new_tokens and ids[-1] not in eos_ids:
        position_ids = torch.tensor([[position]], device=device)
        out = model(
            input_ids=token[:, None], position_ids=position_ids, use_cache=True, logits_to_keep=1, **{name: cache}
        )
        cache = getattr(out, name)
        token = pick(out.logits[:, -1])
        ids.append(int(token))
        position += 1
    return Generated(ids=ids, prefill_s=0.0, generate_s=now(device) - start)
