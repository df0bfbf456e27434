"""Everything but the weights: original LLaVA-NeXT config/tokenizer -> LLaVA-OneVision config, tokenizer, processors.

The original `config.json` is a flat Qwen2 config plus `mm_*` fields; the vision tower is only named there
(`mm_vision_tower`), so its configuration comes from `VISION_TOWERS`, which holds the towers LLaVA-NeXT checkpoints
use. Preprocessing follows the original `SigLipImageProcessor`: a square bicubic resize to the tower's input size,
rescale by 1/255, mean = std = 0.5 per channel.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from fpcli.model.llava.convert_keys import ConversionError

# Vision towers by the name LLaVA-NeXT configs give them, as the original loads them (before it deletes the last
# encoder layer and the pooling head). SigLIP so400m at 384 px is what LLaVA-Video and LLaVA-OneVision use.
VISION_TOWERS: dict[str, dict[str, Any]] = {
    "google/siglip-so400m-patch14-384": {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "image_size": 384,
        "patch_size": 14,
        "hidden_act": "gelu_pytorch_tanh",
        "layer_norm_eps": 1e-6,
    },
}

# Qwen2 fields of the flat original config that make up the text model's config.
_TEXT_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "hidden_act", "max_position_embeddings", "initializer_range", "rms_norm_eps",
    "use_cache", "tie_word_embeddings", "rope_theta", "rope_scaling", "use_sliding_window", "sliding_window",
    "max_window_layers", "attention_dropout", "bos_token_id", "eos_token_id", "pad_token_id",
)
_REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "mm_vision_tower", "mm_hidden_size")
# Original settings of the video pipeline, kept in forestprune.json for provenance.
_ORIGINAL_VIDEO_FIELDS = ("mm_spatial_pool_mode", "mm_spatial_pool_stride", "mm_newline_position",
                          "mm_patch_merge_type", "mm_vision_select_layer", "image_aspect_ratio", "add_time_instruction")
MEDIA_TOKENS = ("<image>", "<video>")

# ChatML as LLaVA-Video's "qwen_1_5" conversation renders it (default system prompt included). Message content may
# be a string or a list of {"type": "image"|"video"|"text"} parts, as transformers' processors pass it.
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\\n' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] }}{% endfor %}"
    "{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def read_original_config(source: Path) -> dict[str, Any]:
    """The original config.json, checked to be a LLaVA-NeXT Qwen2 checkpoint this converter supports."""
    path = source / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConversionError(f"{source} has no config.json") from None
    except (OSError, ValueError) as exc:
        raise ConversionError(f"cannot read {path}: {exc}") from None
    architectures = config.get("architectures") or []
    if "LlavaQwenForCausalLM" not in architectures:
        hint = ("it is already in the transformers format; load it directly"
                if "LlavaOnevisionForConditionalGeneration" in architectures else None)
        raise ConversionError(f"{path} describes {architectures or 'no architecture'}, not the original "
                              "LLaVA-NeXT LlavaQwenForCausalLM", hint=hint)
    missing = [key for key in _REQUIRED if key not in config]
    if missing:
        raise ConversionError(f"{path} lacks {', '.join(missing)}")
    if config.get("mm_projector_type", "linear") != "mlp2x_gelu":
        raise ConversionError(f"{path}: projector {config.get('mm_projector_type', 'linear')!r} is not supported "
                              "(only mlp2x_gelu, the one LLaVA-OneVision has)")
    if config.get("add_faster_video"):
        raise ConversionError(f"{path}: add_faster_video (LLaVA-Video's slow-fast frames) is not supported")
    return config


def vision_tower(config: dict[str, Any]) -> dict[str, Any]:
    """The vision tower's SigLIP config as the original loads it (all layers, before it drops the last one)."""
    name = config["mm_vision_tower"]
    if name not in VISION_TOWERS:
        raise ConversionError(f"vision tower {name!r} is not supported; known: {', '.join(VISION_TOWERS)}")
    tower = VISION_TOWERS[name]
    if tower["hidden_size"] != config["mm_hidden_size"]:
        raise ConversionError(f"mm_hidden_size {config['mm_hidden_size']} does not match the hidden size "
                              f"{tower['hidden_size']} of {name}")
    return tower


def text_config(config: dict[str, Any]):
    """The Qwen2Config of the language model, from the Qwen2 fields of the flat original config."""
    from transformers import Qwen2Config

    return Qwen2Config(**{key: config[key] for key in _TEXT_FIELDS if config.get(key) is not None})


def build_config(config: dict[str, Any], text, tower: dict[str, Any], image_token_id: int, video_token_id: int):
    """The LlavaOnevisionConfig equivalent to the original: same LLM, SigLIP minus its last layer, GELU projector."""
    from transformers import LlavaOnevisionConfig, SiglipVisionConfig

    # The original deletes the last encoder layer and the head, then uses the last remaining hidden state; that
    # is also what mm_vision_select_layer = -2 of the full tower would select.
    vision = SiglipVisionConfig(**dict(tower, num_hidden_layers=tower["num_hidden_layers"] - 1), vision_use_head=False)
    aspect = config.get("image_aspect_ratio", "")
    result = LlavaOnevisionConfig(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        image_token_index=image_token_id,
        video_token_index=video_token_id,
        projector_hidden_act="gelu",  # nn.GELU() in mlp2x_gelu: the exact (erf) GELU
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",  # all patches; SigLIP has no CLS token to drop
        multimodal_projector_bias=True,
        image_grid_pinpoints=config.get("image_grid_pinpoints"),
        vision_aspect_ratio=aspect if aspect.startswith("anyres_max_") else "anyres_max_9",
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
    )
    result.architectures = ["LlavaOnevisionForConditionalGeneration"]
    if config.get("torch_dtype"):
        result.dtype = config["torch_dtype"]
    return result


def original_video_settings(config: dict[str, Any]) -> dict[str, Any]:
    return {key: config[key] for key in _ORIGINAL_VIDEO_FIELDS if key in config}


def load_tokenizer(source: Path, text):
    """The source tokenizer with `<image>` and `<video>` added as special tokens (if missing) and the chat template.

    Returns (tokenizer, image token id, video token id); the ids must fit in the model's embedding table, as they
    do for Qwen2 (its vocabulary has unused rows past the tokenizer's)."""
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    try:
        # The LLM's config, not config.json: transformers would pick a tokenizer class by its "llava*" model type.
        tokenizer = AutoTokenizer.from_pretrained(str(source), config=text, trust_remote_code=False)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError ... for unusable tokenizer files
        raise ConversionError(f"cannot load the tokenizer of {source}: {str(exc).strip().splitlines()[0]}") from None
    missing = [token for token in MEDIA_TOKENS if token not in tokenizer.get_vocab()]
    tokenizer.add_tokens([AddedToken(token, special=True, normalized=False) for token in missing], special_tokens=True)
    ids = [tokenizer.convert_tokens_to_ids(token) for token in MEDIA_TOKENS]
    if max(ids) >= text.vocab_size:
        raise ConversionError(f"the tokenizer's {MEDIA_TOKENS} ids {ids} do not fit the vocabulary of {text.vocab_size}")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer, ids[0], ids[1]


def write_processor_files(directory: Path, config) -> None:
    """Image/video preprocessor and processor configs with the original SigLIP preprocessing."""
    vision = config.vision_config
    side = vision.image_size
    common = {
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"height": side, "width": side},
        "resample": 3,  # bicubic, as the original SigLipImageProcessor
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "processor_class": "LlavaOnevisionProcessor",
    }
    image = dict(common, image_processor_type="LlavaOnevisionImageProcessor", do_pad=True,
                 image_grid_pinpoints=config.image_grid_pinpoints)
    video = dict(common, video_processor_type="LlavaOnevisionVideoProcessor")
    processor = {
        "processor_class": "LlavaOnevisionProcessor",
        "num_image_tokens": (side // vision.patch_size) ** 2,
        "vision_feature_select_strategy": "full",
        "vision_aspect_ratio": config.vision_aspect_ratio,
    }
    for name, content in (("preprocessor_config.json", image), ("video_preprocessor_config.json", video),
                          ("processor_config.json", processor)):
        (directory / name).write_text(json.dumps(content, indent=2) + "\n")


def write_generation_config(source: Path, directory: Path, config) -> None:
    """The source's generation config if it ships one, else the text config's special token ids."""
    if (source / "generation_config.json").is_file():
        shutil.copyfile(source / "generation_config.json", directory / "generation_config.json")
        return
    text = config.text_config
    ids = {key: getattr(text, key, None) for key in ("bos_token_id", "eos_token_id", "pad_token_id")}
    (directory / "generation_config.json").write_text(
        json.dumps({k: v for k, v in ids.items() if v is not None}, indent=2) + "\n")
