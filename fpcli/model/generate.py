"""Generation in two steps: `prefill` (inputs_embeds through the LLM into a KV cache) and `decode` (token by token).

The loop is ours rather than `model.generate` so that prefill and generation are timed separately, and so that a
prefill can extend a cache that already holds a prompt prefix (`ClipSession` prefills the visual tokens once per
clip and each question's text on top of them). Greedy decoding picks the argmax exactly as
`generate(do_sample=False)` does (the equivalence test checks it); with a temperature > 0 tokens are sampled from
softmax(logits / temperature) with a seeded generator, without top-k/top-p truncation or repetition penalty.
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
def prefill(model, inputs_embeds: Tensor, *, cache=None, position_ids: Tensor | None = None,
            **forward) -> tuple[Tensor, object]:
    """Run inputs_embeds [1, L, D] through the LLM after what `cache` holds (a new cache when None).

    Returns the logits of the last position [1, V] and the cache, which now also holds these L positions (a given
    cache is extended in place). `position_ids` [1, L] (Qwen-VL: [3, 1, L]) default to the positions after the
    cached ones; `forward`: more keyword arguments of the model's forward (Qwen3-VL's DeepStack features).
    """
    name = cache_name(model)
    extra = {} if position_ids is None else {"position_ids": position_ids}
    out = model(inputs_embeds=inputs_embeds, use_cache=True, logits_to_keep=1, **{name: cache}, **extra,
                **forward)
    return out.logits[:, -1], getattr(out, name)


@torch.inference_mode()
def decode(
    model, last_logits: Tensor, cache, config: GenerationConfig, eos_ids: set[int], *, next_position: int | None = None
) -> Generated:
    """Pick tokens from last_logits [1, V] on, feeding each back through the cache (extended in place), up to
    `config.max_new_tokens` tokens; stops after an EOS token.

    `next_position` is the position id of the first picked token when the cache holds fewer tokens than the prompt
    had positions (in-LLM pruning drops cached tokens but keeps positions); None: right after the cached tokens.
    """
    device = last_logits.device
    name = cache_name(model)
    pick = _Picker(config, device)
    start = now(device)
    token = pick(last_logits)  # [1]
    ids = [int(token)]
    while len(ids) < config.max_new_tokens and ids[-1] not in eos_ids:
        extra = {}
        if next_position is not None:
            extra["position_ids"] = torch.tensor([[next_position + len(ids) - 1]], device=device)  # [1, 1]
        out = model(input_ids=token[:, None], use_cache=True, logits_to_keep=1, **{name: cache}, **extra)
        token = pick(out.logits[:, -1])
        ids.append(int(token))
    return Generated(ids=ids, generate_s=now(device) - start)
