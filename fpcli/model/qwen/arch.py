"""The two Qwen-VL architectures: what differs between Qwen2.5-VL and Qwen3-VL, in one place.

Both cut frames into patches of `patch_size`, pair frames into temporal groups of `temporal_patch_size` (2) and merge
2x2 patches into one LLM token, so a video is T' = ceil(T/2) groups of an h x w merged grid. They differ in how
the prompt marks time and where the vision tower's output goes:
  qwen2_5_vl  one <|vision_start|> [T'*h*w video tokens] <|vision_end|>; M-RoPE temporal ids spaced by
              tokens_per_second * seconds per group (second_per_grid_ts); CLIP mean/std; video pixels capped per
              frame as qwen-vl-utils does.
  qwen3_vl    per group "<t seconds>" <|vision_start|> [h*w tokens] <|vision_end|> (time in text, M-RoPE temporal id
              per group); DeepStack: features of some vision layers are added to the first LLM layers' hidden
              states at the visual positions; the video pixel budget covers the whole clip.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QwenArch:
    model_type: str  # config.json's model_type
    class_name: str  # transformers' ForConditionalGeneration class
    vision_module: str  # transformers module and class of the vision tower alone (for vision-only loading)
    vision_class: str
    label: str  # how results name the layout
    timestamps_in_text: bool  # Qwen3-VL writes "<t seconds>" before every temporal group
    deepstack: bool  # Qwen3-VL adds vision-layer features inside the first LLM layers
    qwen3_video_rules: bool  # Qwen3-VL's processor: size bounds T*H*W, not H*W


ARCHS: dict[str, QwenArch] = {
    "qwen2_5_vl": QwenArch(
        "qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl",
        "Qwen2_5_VisionTransformerPretrainedModel", "qwen2.5-vl", False, False, False,
    ),
    "qwen3_vl": QwenArch(
        "qwen3_vl", "Qwen3VLForConditionalGeneration", "transformers.models.qwen3_vl.modeling_qwen3_vl",
        "Qwen3VLVisionModel", "qwen3-vl", True, True, True,
    ),
}
LAYOUT_TO_ARCH = {arch.label: arch for arch in ARCHS.values()}
