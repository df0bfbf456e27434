"""Tiny random Qwen2.5-VL and Qwen3-VL checkpoints in the real on-disk format, built offline.

`build_tiny_qwen(dir, arch)` writes what `Qwen/Qwen2.5-VL-*-Instruct` / `Qwen/Qwen3-VL-*-Instruct` ship: config.json,
model.safetensors, generation config, a byte-level BPE tokenizer with the Qwen vision special tokens and a chat
template that renders `{"type": "video"}` parts as `<|vision_start|><|video_pad|><|vision_end|>`, image and video
preprocessor configs. Sizes are tiny: patch 2 with merge 2 (factor 4, where the real models have 28 and 32), so a
24x40 frame is a 6x10 patch grid and a 3x5 merged grid; the pixel budgets are scaled down with the factor.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from fpcli.devtools.tokenizer import build_tokenizer
from fpcli.model.profiles import MODEL_TYPE_LAYOUTS

ARCHS = ("qwen2_5_vl", "qwen3_vl")
# Besides "tiny" (and "tiny-deep", with more decoder layers): Qwen2.5-VL-3B-Instruct's and -7B-Instruct's real sizes
# (qwen2.5-vl layout only).
SHAPES = ("tiny", "tiny-deep", "qwen2.5-vl-3b", "qwen2.5-vl-7b")
TINY_DEEP_LAYERS = 4  # tiny-deep: decoder layers enough for every method's default layer (as fpcli.devtools' LLaVA)
PATCH = 2
MERGE = 2
FACTOR = PATCH * MERGE
MIN_PIXELS = 4 * FACTOR * FACTOR  # per frame: at least 4 merged tokens
MAX_PIXELS = 64 * FACTOR * FACTOR  # per frame: at most 64 merged tokens
SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
    "<|video_pad|>",
]  # fmt: skip
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# The Qwen-VL chat template, reduced to what a video question needs; Qwen2.5-VL adds a default system prompt,
# Qwen3-VL does not.
_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}SYSTEM{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in part %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"


def _text_config(arch: str, vocab_size: int, ids: dict[str, int]) -> dict:
    common = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    if arch == "qwen2_5_vl":  # head_dim 8: the rotary half (4) splits into t/h/w sections
        return dict(common, rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [1, 1, 2]})
    return dict(
        common,
        head_dim=8,
        rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [1, 1, 2],
                         "mrope_interleaved": True},
    )  # fmt: skip


def _vision_config(arch: str) -> dict:
    common = dict(hidden_size=32, intermediate_size=64, num_heads=4, patch_size=PATCH, spatial_merge_size=MERGE,
                  temporal_patch_size=2, out_hidden_size=32, in_channels=3)  # fmt: skip
    if arch == "qwen2_5_vl":  # window of 2x2 merged tokens, the second block with full attention, like the real 7/15/..
        return dict(common, depth=2, window_size=2 * FACTOR, fullatt_block_indexes=[1], tokens_per_second=2)
    return dict(common, depth=3, num_position_embeddings=16, deepstack_visual_indexes=[0, 1])


# Qwen2.5-VL-3B-Instruct's real sizes (config.json of the hub repo), for the benchmark: random weights, tiny tokenizer.
QWEN25_3B_TEXT = dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                      num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=128000,
                      tie_word_embeddings=True,
                      rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]})
QWEN25_3B_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                        patch_size=14, window_size=112, fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2)
QWEN25_3B_PIXELS = dict(patch_size=14, size={"shortest_edge": 128 * 28 * 28, "longest_edge": 768 * 28 * 28})
# Qwen2.5-VL-7B-Instruct: the same vision tower and pixel budgets, merged into the 7B's 3584-wide LLM (Qwen2.5-7B).
QWEN25_7B_TEXT = dict(QWEN25_3B_TEXT, vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                      num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False)
QWEN25_7B_VISION = dict(QWEN25_3B_VISION, out_hidden_size=3584)
REAL_SIZES = {"qwen2.5-vl-3b": (QWEN25_3B_TEXT, QWEN25_3B_VISION), "qwen2.5-vl-7b": (QWEN25_7B_TEXT, QWEN25_7B_VISION)}


def _preprocessor_configs(directory: Path, arch: str, real_shape: bool = False) -> None:
    mean, std = (CLIP_MEAN, CLIP_STD) if arch == "qwen2_5_vl" else ([0.5] * 3, [0.5] * 3)
    common = {
        "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": mean,
        "image_std": std, "merge_size": MERGE, "patch_size": PATCH, "temporal_patch_size": 2, "resample": 3,
        "rescale_factor": 1 / 255, "size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
        **(QWEN25_3B_PIXELS if real_shape else {}),
    }  # fmt: skip
    processor = "Qwen2_5_VLProcessor" if arch == "qwen2_5_vl" else "Qwen3VLProcessor"
    image = dict(common, image_processor_type="Qwen2VLImageProcessor", processor_class=processor)
    if arch == "qwen2_5_vl":
        video = dict(common, video_processor_type="Qwen2VLVideoProcessor", processor_class=processor)
    else:  # Qwen3-VL's longest_edge is a budget for the whole video (768 frames' worth), plus its sampling rule
        size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS * 768}
        video = dict(common, size=size, video_processor_type="Qwen3VLVideoProcessor", processor_class=processor,
                     fps=2, min_frames=4, max_frames=768, do_sample_frames=True)  # fmt: skip
    (directory / "preprocessor_config.json").write_text(json.dumps(image, indent=2) + "\n")
    (directory / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2) + "\n")


def build_qwen_checkpoint(directory: str | Path, layout: str, seed: int = 0, shape: str = "tiny",
                          device: str = "cpu") -> Path:
    """`build_tiny_qwen` by the project's names: a Qwen-VL layout and a shape of SHAPES."""
    archs = {label: arch for arch, label in MODEL_TYPE_LAYOUTS.items()}
    tiny = shape in ("tiny", "tiny-deep")
    if layout not in archs or shape not in SHAPES or (not tiny and layout != "qwen2.5-vl"):
        raise ValueError(f"a Qwen-VL checkpoint is {' or '.join(archs)} of shape tiny or tiny-deep, or qwen2.5-vl "
                         f"of shape {' or '.join(REAL_SIZES)}; got {layout} of shape {shape}")
    if tiny:
        layers = TINY_DEEP_LAYERS if shape == "tiny-deep" else 2
        return build_tiny_qwen(directory, archs[layout], seed, device=device, text_layers=layers)
    return build_tiny_qwen(directory, archs[layout], seed, real_shape=shape, device=device)


def build_tiny_qwen(directory: str | Path, arch: str = "qwen2_5_vl", seed: int = 0, real_shape: bool | str = False,
                    device: str = "cpu", text_layers: int = 2) -> Path:
    """Write a tiny random Qwen2.5-VL (`qwen2_5_vl`) or Qwen3-VL (`qwen3_vl`) checkpoint into `directory`.

    `real_shape` (Qwen2.5-VL only): a real model's sizes instead, for benchmarks: True or "qwen2.5-vl-3b" (3.75B
    parameters, 7.5 GB), "qwen2.5-vl-7b" (8.3B, 16.6 GB). The weights are drawn on `device` ("cuda": seconds for a
    7B), deterministic from `seed` and the device. `text_layers`: decoder layers of the tiny LLM (in-LLM methods
    act at layer 2 by default, so they need 3 or more)."""
    real = "qwen2.5-vl-3b" if real_shape is True else real_shape
    if arch not in ARCHS or (real and (arch != "qwen2_5_vl" or real not in REAL_SIZES)):
        raise ValueError(f"arch must be one of {ARCHS} (real_shape: qwen2_5_vl, one of {', '.join(REAL_SIZES)}), "
                         f"got {arch!r} {real_shape!r}")
    text, vision = REAL_SIZES[real] if real else ({"num_hidden_layers": text_layers}, {})
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers.utils import logging as hf_logging

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    template = _TEMPLATE.replace("SYSTEM", _SYSTEM if arch == "qwen2_5_vl" else "")
    extra = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>", "vision_bos_token": "<|vision_start|>",
             "vision_eos_token": "<|vision_end|>"}  # fmt: skip
    vocab_size, id_list = build_tokenizer(directory, SPECIALS, template, extra)
    ids = dict(zip(SPECIALS, id_list))
    config_class, model_class = (
        (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration)
        if arch == "qwen2_5_vl"
        else (Qwen3VLConfig, Qwen3VLForConditionalGeneration)
    )
    config = config_class(
        text_config={**_text_config(arch, vocab_size, ids), **text},
        vision_config={**_vision_config(arch), **vision},
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=text.get("tie_word_embeddings", False),  # the 3B ties its embeddings and lm_head
    )
    where = torch.device(device)
    cuda = [torch.cuda.current_device() if where.index is None else where.index] if where.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), where:
        torch.manual_seed(seed)
        # a real shape is drawn and saved as the hub's checkpoint is: bfloat16
        model = model_class._from_config(config, dtype=torch.bfloat16 if real else torch.float32).eval()
    eos, pad = ids["<|im_end|>"], ids["<|endoftext|>"]
    model.generation_config = GenerationConfig(bos_token_id=pad, eos_token_id=[eos, pad], pad_token_id=pad,
                                               do_sample=False)  # fmt: skip
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(directory, safe_serialization=True)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    _preprocessor_configs(directory, arch, bool(real))
    return directory
