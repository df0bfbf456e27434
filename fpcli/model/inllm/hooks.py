"""One pruned prefill through forward pre-hooks on the loaded model's decoder layers.

A `Reducer` (one per method) sees each layer's input before the layer runs and may drop tokens (and rewrite the
survivors' hidden states, for merging methods). The hooks then hand every later layer the survivors with their
original position ids, rotary embeddings and attention-mask rows/columns, so the sequence shrinks for real. The
hooks are registered for one forward call and removed in a `finally`; nothing of the model is patched, so a later
unpruned run is bit-for-bit the unpruned model. After the pass every layer's KV cache is cropped to the final
survivors (earlier layers cached more), so decoding continues on the short cache with explicit position ids.
Qwen3-VL's DeepStack features, which the model adds to the visual positions of the first layers' outputs, are
added here instead (forward hooks on those layers), to the surviving visual tokens only: the model's own addition
indexes the full sequence, which is no longer there once a method dropped tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch
from torch import Tensor

from fpcli.model.flops import prefill_flops_per_layer
from fpcli.model.generate import cache_name
from fpcli.model.inllm.attention import last_token_attention
from fpcli.model.inllm.span import InLLMPrefill
from fpcli.model.timing import now


@dataclass
class LayerInput:
    """What a reducer sees at the input of decoder layer `index` (current survivors only)."""

    index: int
    layer: torch.nn.Module
    hidden: Tensor  # [1, L', D]
    visual: Tensor  # [L'] flat visual index t*H*W + y*W + x of each survivor, -1 for text and newlines
    cos: Tensor  # [1, L', head_dim] ([3, 1, L', head_dim] for Qwen2.5-VL before transformers 5.17)
    sin: Tensor

    def attention_row(self) -> Tensor:
        """This layer's last-token attention over the survivors, mean over heads: [L'] float32."""
        return last_token_attention(self.layer, self.hidden, self.cos, self.sin)


class Span(Protocol):
    """Where the visual tokens sit in the prompt (VisualSpan for LLaVA, fpcli.model.qwen.inllm's for Qwen-VL)."""

    grid: tuple[int, int]  # (H, W) tokens a frame

    @property
    def tokens(self) -> int: ...

    def visual_index(self, seq_len: int, device: torch.device | str = "cpu") -> Tensor:
        """[seq_len] flat visual index t*H*W + y*W + x of each position, -1 for text and newlines."""


class Reducer(Protocol):
    def reduce(self, step: LayerInput) -> tuple[Tensor, Tensor | None] | None:
        """None (keep all), or (keep [L''] ascending indices into the current sequence, new hidden [1, L', D] or
        None): the layer then runs on hidden[:, keep]."""

    def observe(self, step: LayerInput) -> None:
        """Called after reduce() with the layer's final input (e.g. to record its attention row)."""


def decoder_layers(model) -> torch.nn.ModuleList:
    """The LLM's decoder layers of a LlavaOnevisionForConditionalGeneration (or a bare causal LM)."""
    inner = model.model
    return getattr(inner, "language_model", inner).layers


class _Pass:
    def __init__(self, reducer: Reducer, visual: Tensor, seq_len: int):
        self.reducer = reducer
        self.alive = torch.arange(seq_len, device=visual.device)  # [L'] original indices of the survivors
        self.visual = visual  # [L] per original position
        self.alive_at: list[Tensor] = []  # survivors each layer runs on
        self._positional_of: Tensor | None = None  # the survivors self._view was indexed for
        self._view: dict = {}
        self.prune_s = 0.0  # seconds spent in the hooks (selection, merging, attention rows, re-indexing)

    def _positional(self, kwargs: dict) -> dict:
        """Rotary embeddings, position ids and mask of the current survivors, indexed once per change of them.

        The model hands every layer the same full-prompt tensors ([1, L, hd] cos/sin, [1, L] ids, [1, 1, L, L]
        mask or None, meaning causal, which stays None), so the survivors' view is valid until they change.
        """
        if self._positional_of is not self.alive:
            cos, sin = kwargs["position_embeddings"]  # positions on the next-to-last axis, whatever comes before
            view = {"position_embeddings": (cos[..., self.alive, :], sin[..., self.alive, :])}
            if kwargs.get("position_ids") is not None:
                view["position_ids"] = kwargs["position_ids"][:, self.alive]
            mask = kwargs.get("attention_mask")
            if isinstance(mask, Tensor):
                view["attention_mask"] = mask[:, :, self.alive][:, :, :, self.alive]
            elif mask is not None:
                raise RuntimeError(f"in-LLM pruning needs a tensor or no attention mask, got {type(mask).__name__}")
            self._view, self._positional_of = view, self.alive
        return self._view

    def _step(self, module, hidden: Tensor, kwargs: dict) -> LayerInput:
        cos, sin = self._positional(kwargs)["position_embeddings"]
        return LayerInput(len(self.alive_at), module, hidden, self.visual[self.alive], cos, sin)

    def hook(self, module, args: tuple, kwargs: dict):
        hidden = args[0] if args else kwargs["hidden_states"]
        start = now(hidden.device)  # the layers before are done: what follows is the method's own time
        try:
            return self._reduce(module, hidden, args, kwargs)
        finally:
            self.prune_s += now(hidden.device) - start

    def _reduce(self, module, hidden: Tensor, args: tuple, kwargs: dict):
        step = self._step(module, hidden, kwargs)
        reduction = self.reducer.reduce(step)
        if reduction is not None:
            keep, new_hidden = reduction
            self.alive = self.alive[keep]
            hidden = (hidden if new_hidden is None else new_hidden)[:, keep]
            step = self._step(module, hidden, kwargs)
        self.reducer.observe(step)
        self.alive_at.append(self.alive)
        if len(self.alive) == len(self.visual):
            return None
        kwargs = dict(kwargs, **self._positional(kwargs))
        if args:
            return (hidden, *args[1:]), kwargs
        return args, dict(kwargs, hidden_states=hidden)

    def deepstack_hook(self, features: Tensor):
        """A forward hook adding features [V, D] (by flat visual index) to the layer's output at the surviving
        visual tokens, as transformers' `_deepstack_process` adds them at every visual position."""

        def hook(module, args: tuple, output: Tensor) -> Tensor:
            visual = self.visual[self.alive]  # [L'] the survivors this layer ran on
            rows = (visual >= 0).nonzero()[:, 0]  # [V']
            output = output.clone()
            output[0, rows] = output[0, rows] + features[visual[rows]].to(output.dtype)
            return output

        return hook

    def crop(self, cache) -> None:
        """Keep only the final survivors in every layer's cache (layers before a reduction cached more)."""
        final = self.alive
        for layer_cache, alive in zip(cache.layers, self.alive_at):
            if len(alive) != len(final):
                index = torch.searchsorted(alive, final)  # both ascending; final is a subset of alive
                layer_cache.keys = layer_cache.keys[:, :, index]
                layer_cache.values = layer_cache.values[:, :, index]


@torch.inference_mode()
def run_pruned_prefill(
    model, inputs_embeds: Tensor, span: Span, reducer: Reducer, method: str, options: dict, *,
    next_position: int | None = None, deepstack: Sequence[Tensor] = (), **forward,
) -> InLLMPrefill:
    """Prefill inputs_embeds [1, L, D] with `reducer` acting at the decoder layers' inputs; see the module docs.

    next_position: the first decoded token's position id (default L; Qwen-VL: the unpruned prompt's largest + 1);
    deepstack: per layer i, features [V, D] added to layer i's output at the surviving visual tokens (Qwen3-VL);
    forward: more arguments of the model's forward (Qwen-VL's 3-D position_ids [3, 1, L]).
    """
    if inputs_embeds.dim() != 3 or inputs_embeds.shape[0] != 1:
        raise ValueError(f"inputs_embeds must have shape [1, L, D], got {list(inputs_embeds.shape)}")
    seq_len = inputs_embeds.shape[1]
    state = _Pass(reducer, span.visual_index(seq_len, inputs_embeds.device), seq_len)
    layers = decoder_layers(model)
    handles = [layer.register_forward_pre_hook(state.hook, with_kwargs=True) for layer in layers]
    handles += [layer.register_forward_hook(state.deepstack_hook(feats)) for layer, feats in zip(layers, deepstack)]
    try:
        out = model(inputs_embeds=inputs_embeds, use_cache=True, logits_to_keep=1, **forward)
    finally:
        for handle in handles:
            handle.remove()
    cache = getattr(out, cache_name(model))
    state.crop(cache)
    lengths = [len(alive) for alive in state.alive_at]
    visual_lengths = [int((state.visual[alive] >= 0).sum()) for alive in state.alive_at]
    text_config = model.config.get_text_config()
    return InLLMPrefill(
        last_logits=out.logits[:, -1],
        cache=cache,
        next_position=seq_len if next_position is None else next_position,
        kept_positions=state.alive,
        visual_before=span.tokens,
        layer_lengths=lengths,
        visual_lengths=visual_lengths,
        prefill_tflops=prefill_flops_per_layer(text_config, lengths) / 1e12,
        prune_s=state.prune_s,
        method=method,
        options=dict(options),
    )
