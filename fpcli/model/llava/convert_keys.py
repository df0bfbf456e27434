"""Tensor names: original LLaVA-NeXT (`LlavaQwenForCausalLM`) -> transformers' LlavaOnevisionForConditionalGeneration.

Every source tensor matches exactly one rule below, which either renames it or drops it for a stated reason; a
tensor no rule matches is an error. The targets are the parameter names of transformers' model (its `state_dict()`),
so a converted checkpoint loads without any legacy renaming, and `plan_tensors` checks the result against the
shapes that model expects: nothing missing, nothing twice, no shape mismatch. Only metadata is read here.

Original LLaVA-NeXT code this mirrors (llava/model/multimodal_encoder/siglip_encoder.py, llava_arch.py):
- the SigLIP tower deletes its last encoder layer and replaces the pooling head by Identity when it loads, then
  takes `hidden_states[-1]` (the last kept layer, before post_layernorm). transformers' config does the same with
  `num_hidden_layers = N - 1`, `vision_use_head = False`, `vision_feature_layer = -1`, so tensors of dropped layers
  or of the head (present only if a checkpoint was saved before that surgery) are dropped, and post_layernorm is
  kept (transformers' SigLIP owns it; neither implementation applies it to the selected hidden state).
- `mm_projector` is `Sequential(Linear, GELU, Linear)`: indices 0 and 2 are the two linear layers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fpcli.model.errors import ModelError

_VISION = r"model\.vision_tower\.vision_tower\.vision_model\."


class ConversionError(ModelError):
    """A checkpoint cannot be converted (unexpected/missing tensor, wrong shape, unsupported config, ...)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint  # printed by the CLI as a `Hint:` line


@dataclass(frozen=True)
class TensorInfo:
    """A source tensor as its safetensors header describes it."""

    name: str
    file: str  # shard file name inside the source directory
    dtype: str  # safetensors dtype code: "BF16", "F32", ...
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Move:
    """One source tensor copied, unchanged, under a new name."""

    source: TensorInfo
    target: str


@dataclass
class TensorPlan:
    """The whole mapping, verified: every source tensor moved or dropped once, every target filled once."""

    moves: list[Move] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # source name -> why it is not needed


# (pattern over the full source name, replacement) — first match wins. A replacement of None drops the tensor.
_RULES: list[tuple[str, str | None, str]] = [
    (r"model\.embed_tokens\.(.+)", r"model.language_model.embed_tokens.\1", ""),
    (r"model\.layers\.(\d+)\.(.+)", r"model.language_model.layers.\1.\2", ""),
    (r"model\.norm\.(.+)", r"model.language_model.norm.\1", ""),
    (r"lm_head\.weight", "lm_head.weight", ""),
    (_VISION + r"embeddings\.(.+)", r"model.vision_tower.embeddings.\1", ""),
    (_VISION + r"encoder\.layers\.(\d+)\.(.+)", r"model.vision_tower.encoder.layers.\1.\2", ""),
    (_VISION + r"post_layernorm\.(.+)", r"model.vision_tower.post_layernorm.\1", ""),
    (_VISION + r"head\..+", None, "SigLIP pooling head, replaced by Identity in the original"),
    (r"model\.mm_projector\.0\.(weight|bias)", r"model.multi_modal_projector.linear_1.\1", ""),
    (r"model\.mm_projector\.2\.(weight|bias)", r"model.multi_modal_projector.linear_2.\1", ""),
    (r"model\.image_newline", "model.image_newline", ""),
    (r".+\.rotary_emb\.inv_freq", None, "rotary frequencies, recomputed from the config"),
    (r"model\.faster_token", None, "LLaVA-Video's faster-frame token, unused without add_faster_video"),
]
_COMPILED = [(re.compile(pattern), replacement, reason) for pattern, replacement, reason in _RULES]
_VISION_LAYER = re.compile(_VISION + r"encoder\.layers\.(\d+)\.")


def target_name(source: str, vision_layers: int, tied_lm_head: bool) -> tuple[str | None, str]:
    """(target name, "") for a renamed tensor, (None, reason) for a dropped one; ConversionError if unknown.

    `vision_layers` is the number of SigLIP layers the original keeps; `tied_lm_head` drops a stored lm_head
    because the original ties it to the input embeddings on load."""
    layer = _VISION_LAYER.match(source)
    if layer and int(layer.group(1)) >= vision_layers:
        return None, f"SigLIP layer {layer.group(1)}, deleted by the original (it keeps {vision_layers} layers)"
    if source == "lm_head.weight" and tied_lm_head:
        return None, "lm_head tied to the input embeddings (tie_word_embeddings)"
    for pattern, replacement, reason in _COMPILED:
        if pattern.fullmatch(source):
            return (None, reason) if replacement is None else (pattern.sub(replacement, source), "")
    raise ConversionError(
        f"unexpected tensor {source!r}: no LLaVA-NeXT -> LLaVA-OneVision rule covers it",
        hint="only LlavaQwenForCausalLM checkpoints with a SigLIP tower and an mlp2x_gelu projector are supported",
    )


def plan_tensors(sources: list[TensorInfo], expected: dict[str, tuple[int, ...]], vision_layers: int,
                 tied_lm_head: bool) -> TensorPlan:
    """Map and verify all source tensors against the target model's expected {name: shape}."""
    plan = TensorPlan()
    filled: dict[str, str] = {}  # target -> source that fills it
    seen: dict[str, str] = {}  # source name -> file, to catch a tensor stored in two shards
    for info in sources:
        if info.name in seen:
            raise ConversionError(f"tensor {info.name!r} is stored twice ({seen[info.name]} and {info.file})")
        seen[info.name] = info.file
        try:
            target, reason = target_name(info.name, vision_layers, tied_lm_head)
        except ConversionError as exc:
            raise ConversionError(f"{exc} ({info.file})", hint=exc.hint) from None
        if target is None:
            plan.dropped[info.name] = reason
            continue
        if target not in expected:
            raise ConversionError(f"unexpected tensor {info.name!r} ({info.file}): the converted model has no {target!r}")
        if target in filled:
            raise ConversionError(f"tensors {filled[target]!r} and {info.name!r} both map to {target!r}")
        if tuple(info.shape) != tuple(expected[target]):
            raise ConversionError(
                f"tensor {info.name!r} ({info.file}) has shape {list(info.shape)}, but the config implies "
                f"{list(expected[target])} for {target!r}"
            )
        filled[target] = info.name
        plan.moves.append(Move(info, target))
    missing = sorted(set(expected) - set(filled))
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ConversionError(f"the checkpoint lacks {len(missing)} tensor(s) the converted model needs: {shown}")
    return plan
