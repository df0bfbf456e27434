"""Tiny random checkpoints in the ORIGINAL LLaVA-NeXT layout (LlavaQwenForCausalLM), as lmms-lab publishes them.

`reference_model(seed)` builds a tiny LlavaOnevisionForConditionalGeneration; `build_tiny_original(dir, seed)`
writes the same weights the way LLaVA-NeXT saves LLaVA-Video-7B-Qwen2: a flat Qwen2 config with `mm_*` fields,
bf16 safetensors shards with an index under the original names, and a Qwen2 tokenizer in vocab.json/merges.txt
form without `<image>`/`<video>`. The original names are derived here from the reference model's by the inverse
of the documented mapping, independently of the converter's own rules, so converting the directory back must give
exactly the reference weights.

The vision tower is named TINY_TOWER; tests register TINY_TOWER_CONFIG under that name in
`fpcli.model.llava.convert_config.VISION_TOWERS`. Like the real tower it has one layer more than the converted model
keeps (the original deletes the last one when it loads).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

TINY_TOWER = "tiny-random/siglip-patch2-30px"
TINY_TOWER_CONFIG = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 3,  # the converted model keeps 2
    "num_attention_heads": 4,
    "image_size": 30,
    "patch_size": 2,
    "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6,
}
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 272  # embedding rows; the tokenizer has 259 tokens (+ <image>, <video> after conversion)
IMAGE_TOKEN_ID = 259
VIDEO_TOKEN_ID = 260

# Original name prefix -> transformers name prefix (the documented mapping, written out for the tests).
_PREFIXES = [
    ("model.image_newline", "model.image_newline"),
    ("model.mm_projector.0.", "model.multi_modal_projector.linear_1."),
    ("model.mm_projector.2.", "model.multi_modal_projector.linear_2."),
    ("model.vision_tower.vision_tower.vision_model.", "model.vision_tower."),
    ("model.", "model.language_model."),
    ("lm_head.", "lm_head."),
]


def original_name(name: str) -> str:
    """The LLaVA-NeXT name of a LlavaOnevisionForConditionalGeneration parameter."""
    for original, converted in _PREFIXES:
        if name.startswith(converted):
            return original + name[len(converted):]
    raise KeyError(name)


def reference_model(seed: int = 0):
    """The tiny model a converted checkpoint must equal; weights rounded to bf16 like the stored ones."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, Qwen2Config, SiglipVisionConfig

    text = Qwen2Config(vocab_size=VOCAB_SIZE, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, rope_theta=1_000_000.0,
                       max_position_embeddings=4096, tie_word_embeddings=False, eos_token_id=258, bos_token_id=256)
    vision = SiglipVisionConfig(**dict(TINY_TOWER_CONFIG, num_hidden_layers=2), vision_use_head=False)
    config = LlavaOnevisionConfig(text_config=text.to_dict(), vision_config=vision.to_dict(),
                                  image_token_index=IMAGE_TOKEN_ID, video_token_index=VIDEO_TOKEN_ID,
                                  vision_feature_layer=-1, vision_feature_select_strategy="full")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaOnevisionForConditionalGeneration(config).eval()
        with torch.no_grad():
            for param in model.parameters():
                param.copy_(param.to(torch.bfloat16).float())
    return model


def original_state_dict(seed: int = 0, with_unused: bool = False) -> dict[str, torch.Tensor]:
    """The reference weights under their original names, in bf16.

    `with_unused` adds what a checkpoint saved before LLaVA-NeXT's tower surgery would hold: the last SigLIP layer
    and the pooling head (both unused by the original model)."""
    model = reference_model(seed)
    tensors = {original_name(name): t.detach().to(torch.bfloat16).contiguous() for name, t in model.state_dict().items()}
    if with_unused:
        generator = torch.Generator().manual_seed(seed + 1)
        prefix = "model.vision_tower.vision_tower.vision_model."
        for name, t in model.state_dict().items():
            if name.startswith("model.vision_tower.encoder.layers.1."):
                extra = prefix + "encoder.layers.2." + name[len("model.vision_tower.encoder.layers.1."):]
                tensors[extra] = torch.randn(t.shape, generator=generator).to(torch.bfloat16)
        for name, shape in (("head.probe", (1, 1, 32)), ("head.attention.in_proj_weight", (96, 32)),
                            ("head.layernorm.weight", (32,)), ("head.mlp.fc1.weight", (64, 32))):
            tensors[prefix + name] = torch.randn(shape, generator=generator).to(torch.bfloat16)
    return tensors


def original_config() -> dict:
    """A config.json as LLaVA-NeXT writes it for LLaVA-Video-7B-Qwen2, with tiny sizes."""
    side = TINY_TOWER_CONFIG["image_size"]
    return {
        "architectures": ["LlavaQwenForCausalLM"],
        "model_type": "llava_qwen",
        "torch_dtype": "bfloat16",
        "vocab_size": VOCAB_SIZE, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu", "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6, "rope_theta": 1_000_000.0, "rope_scaling": None, "tie_word_embeddings": False,
        "use_sliding_window": False, "sliding_window": 4096, "max_window_layers": 2, "attention_dropout": 0.0,
        "bos_token_id": 256, "eos_token_id": 258, "initializer_range": 0.02, "use_cache": True,
        "mm_vision_tower": TINY_TOWER, "mm_hidden_size": TINY_TOWER_CONFIG["hidden_size"],
        "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
        "mm_patch_merge_type": "spatial_unpad", "mm_newline_position": "grid", "mm_spatial_pool_mode": "average",
        "mm_spatial_pool_stride": 2, "image_aspect_ratio": "anyres_max_9", "add_faster_video": False,
        "image_grid_pinpoints": [[side * i, side * j] for i in (1, 2) for j in (1, 2)],
        "mm_use_im_start_end": False, "mm_use_im_patch_token": False, "use_mm_proj": True,
        "tokenizer_model_max_length": 4096, "tokenizer_padding_side": "right",
    }


def _write_tokenizer(directory: Path) -> None:
    """A byte-level Qwen2 tokenizer (no merges: one token per byte) in the slow-tokenizer files lmms-lab ships."""
    from tokenizers import pre_tokenizers

    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    specials = {token: len(vocab) + i for i, token in enumerate(SPECIALS)}
    (directory / "added_tokens.json").write_text(json.dumps(specials))
    decoder = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                        "special": True} for t, i in specials.items()}
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "added_tokens_decoder": decoder, "bos_token": None,
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": None, "errors": "replace",
        "model_max_length": 4096, "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
    }))
    (directory / "special_tokens_map.json").write_text(json.dumps({
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
    }))


def build_tiny_original(directory: str | Path, seed: int = 0, num_shards: int = 3, with_unused: bool = False,
                        edit: Callable[[dict[str, torch.Tensor]], None] | None = None) -> Path:
    """Write a tiny LLaVA-Video checkpoint in the original layout into `directory`; return it.

    `edit` may change the original-named tensors before they are written (to build broken checkpoints)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = original_state_dict(seed, with_unused)
    if edit is not None:
        edit(tensors)
    names = list(tensors)
    weight_map = {}
    for i in range(num_shards):
        file = f"model-{i + 1:05d}-of-{num_shards:05d}.safetensors"
        part = {name: tensors[name] for name in names[i::num_shards]}
        save_file(part, directory / file, metadata={"format": "pt"})
        weight_map.update({name: file for name in part})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (directory / "config.json").write_text(json.dumps(original_config(), indent=2))
    (directory / "generation_config.json").write_text(json.dumps({"bos_token_id": 256, "eos_token_id": 258}))
    _write_tokenizer(directory)
    return directory
