"""Tiny random LLaVA-OneVision checkpoints in the real on-disk format, built offline.

Random weights: a model loaded from one answers noise. It exists to try and test the whole pipeline (sampling,
encoding, pruning, layouts, generation, output) without downloading anything: `python -m fpcli.devtools
tiny-checkpoint DIR`, then `forestprune ask VIDEO QUESTION --model DIR`. The tests build theirs with it too.

`build_tiny_checkpoint(dir)` writes what `llava-hf/llava-onevision-qwen2-*-ov-hf` ships (config.json,
model.safetensors, generation config, a Qwen2 byte-level BPE tokenizer with `<image>`/`<video>` special tokens and
a ChatML chat template, image/video preprocessor configs with SigLIP normalisation), only with tiny sizes in the
spirit of transformers' own tests for this class. With `layout="video"` it also writes `forestprune.json`, the
marker `forestprune convert` leaves in LLaVA-Video checkpoints.

Sizes (`SHAPES`): "tiny" is SigLIP 30 px with patch 2, a 15x15 grid (odd, like the real 27x27), so onevision
pooling yields 8x8 tokens per frame (ceil(15/2)) and LLaVA-Video's 2x2 average pooling yields 7x7 (floor(15/2)).
"tiny-deep" is "tiny" with 4 decoder layers, so the in-LLM methods' default layers (FastV's K=2, STTM's layer 2) fit.
"llava-ov-0.5b" has every size of llava-hf/llava-onevision-qwen2-0.5b-ov-hf (SigLIP-so400m at 384 px, 27x27 patches;
Qwen2-0.5B; the real vocabulary size, so the LM head costs what it does there): random weights with the real compute,
for benchmarks. "llava-video-7b" is LLaVA-Video-7B-Qwen2's (the same SigLIP-so400m, Qwen2-7B: 8B parameters, saved in
bfloat16 as the hub's, 16 GB; build it with device="cuda" where there is one: minutes on a CPU). "tiny-deep" is "tiny"
with 4 decoder layers, so that the in-LLM methods' default layers (FastV's K = 2, STTM's layer 2) exist in it. The
tokenizer is the tiny one in every shape; ids it does not know decode to nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from fpcli.devtools.tokenizer import build_tokenizer
from fpcli.model import LAYOUTS
from fpcli.model.profiles import MODEL_TYPE_LAYOUTS


@dataclass(frozen=True)
class CheckpointShape:
    """The sizes of a LLaVA-OneVision checkpoint: SigLIP tower, Qwen2 LLM, vocabulary (None: the tokenizer's)."""

    image_size: int
    patch_size: int
    vision_hidden: int
    vision_intermediate: int
    vision_layers: int
    vision_heads: int
    text_hidden: int
    text_intermediate: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    vocab_size: int | None
    tie_word_embeddings: bool
    saved_dtype: torch.dtype = torch.float32  # what the weights are written in

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


SHAPES: dict[str, CheckpointShape] = {
    "tiny": CheckpointShape(30, 2, 32, 64, 2, 4, 32, 64, 2, 4, 2, None, False),
    "tiny-deep": CheckpointShape(30, 2, 32, 64, 2, 4, 32, 64, 4, 4, 2, None, False),
    "llava-ov-0.5b": CheckpointShape(384, 14, 1152, 4304, 26, 16, 896, 4864, 24, 14, 2, 151647, True),
    # lmms-lab/LLaVA-Video-7B-Qwen2's config.json: Qwen2-7B (3584 wide, 28 layers, 28 heads, 4 KV heads, untied head)
    "llava-video-7b": CheckpointShape(384, 14, 1152, 4304, 26, 16, 3584, 18944, 28, 28, 4, 152064, False,
                                      torch.bfloat16),
}
IMAGE_SIZE = SHAPES["tiny"].image_size
PATCH_SIZE = SHAPES["tiny"].patch_size
GRID = SHAPES["tiny"].grid  # 15
SIGLIP_MEAN = [0.5, 0.5, 0.5]
SIGLIP_STD = [0.5, 0.5, 0.5]

def _preprocessor_configs(directory: Path, image_size: int, grid: int) -> None:
    """Image and video processor configs as llava-hf ships them (SigLIP mean/std 0.5, bicubic, square resize)."""
    common = {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": SIGLIP_MEAN,
        "image_std": SIGLIP_STD,
        "processor_class": "LlavaOnevisionProcessor",
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"height": image_size, "width": image_size},
    }
    image = dict(
        common,
        do_pad=True,
        image_processor_type="LlavaOnevisionImageProcessor",
        image_grid_pinpoints=[[image_size * i, image_size * j] for i in (1, 2) for j in (1, 2)],
    )
    video = dict(common, video_processor_type="LlavaOnevisionVideoProcessor")
    (directory / "preprocessor_config.json").write_text(json.dumps(image, indent=2) + "\n")
    (directory / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2) + "\n")
    processor = {
        "processor_class": "LlavaOnevisionProcessor",
        "num_image_tokens": grid * grid,
        "vision_feature_select_strategy": "full",
        "vision_aspect_ratio": "anyres_max_9",
    }
    (directory / "processor_config.json").write_text(json.dumps(processor, indent=2) + "\n")


def build_tiny_checkpoint(directory: str | Path, layout: str = "onevision", seed: int = 0, shape: str = "tiny",
                          device: str = "cpu") -> Path:
    """Write a random LlavaOnevisionForConditionalGeneration checkpoint of `SHAPES[shape]` into `directory`; return it.

    Deterministic from `seed` and `device` (the weights are drawn there, in the saved dtype: "cuda" makes a 7B in
    seconds; the global torch RNG state is left untouched). A Qwen-VL layout writes that architecture's checkpoint
    instead (fpcli.devtools.tiny_qwen).
    """
    if layout in MODEL_TYPE_LAYOUTS.values():
        from fpcli.devtools.tiny_qwen import build_qwen_checkpoint

        return build_qwen_checkpoint(directory, layout, seed, shape, device)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    size = SHAPES[shape]
    from transformers import (
        GenerationConfig,
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        Qwen2Config,
        SiglipVisionConfig,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab_size, (pad_id, _, eos_id, image_id, video_id) = build_tokenizer(directory)

    text_config = Qwen2Config(
        vocab_size=size.vocab_size or vocab_size,
        hidden_size=size.text_hidden,
        intermediate_size=size.text_intermediate,
        num_hidden_layers=size.text_layers,
        num_attention_heads=size.text_heads,
        num_key_value_heads=size.text_kv_heads,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        tie_word_embeddings=size.tie_word_embeddings,
        bos_token_id=pad_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    vision_config = SiglipVisionConfig(
        hidden_size=size.vision_hidden,
        intermediate_size=size.vision_intermediate,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=size.vision_heads,
        image_size=size.image_size,
        patch_size=size.patch_size,
        vision_use_head=False,
    )
    config = LlavaOnevisionConfig(
        vision_config=vision_config.to_dict(),
        text_config=text_config.to_dict(),
        image_token_index=image_id,
        video_token_index=video_id,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        image_grid_pinpoints=[[size.image_size * i, size.image_size * j] for i in (1, 2) for j in (1, 2)],
        tie_word_embeddings=size.tie_word_embeddings,
    )
    where = torch.device(device)
    cuda = [torch.cuda.current_device() if where.index is None else where.index] if where.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), where:
        torch.manual_seed(seed)
        model = LlavaOnevisionForConditionalGeneration._from_config(config, dtype=size.saved_dtype).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=pad_id, eos_token_id=eos_id, pad_token_id=pad_id, do_sample=False
    )
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # keep test output clean of "Writing model shards" bars
    try:
        model.save_pretrained(directory, safe_serialization=True)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    _preprocessor_configs(directory, size.image_size, size.grid)
    if layout == "video":
        (directory / "forestprune.json").write_text(json.dumps({"layout": "video"}, indent=2) + "\n")
    return directory
