"""`load_model`: spec -> a ready `VideoLLM`, a new one on every call (the caller holds it and reuses it).

Safetensors only, `trust_remote_code=False`, local files only (resolution already put the checkpoint on disk).
`vision_only=True` builds just the SigLIP tower, the projector and the newline embedding from the config and reads
only their tensors from the safetensors shards: the LLM is never instantiated (what `forestprune stats` needs).
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import torch

from fpcli.model.cpu_dtype import cpu_auto_dtype
from fpcli.model.encode import VisionParts
from fpcli.model.errors import ModelError
from fpcli.model.llm import VideoLLM
from fpcli.model.preprocess import Preprocessor
from fpcli.model.profiles import (
    ATTENTION_NAMES,
    DTYPE_NAMES,
    MODEL_TYPE_LAYOUTS,
    Progress,
    ResolvedModel,
    resolve_model,
)

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}
# Checkpoint key prefixes of the vision side; transformers 5 saves the legacy names, older exports add "model.".
_VISION_PREFIXES = {"vision_tower.": "tower", "multi_modal_projector.": "projector", "image_newline": "newline"}

QWEN_LAYOUTS = tuple(MODEL_TYPE_LAYOUTS.values())

def resolve_device(device: str) -> torch.device:
    """auto -> cuda if available else cpu; cpu; cuda; cuda:N."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ModelError(f"device {device} was requested but CUDA is not available; use --device cpu")
        index = int(device[5:]) if ":" in device else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ModelError(f"device {device} does not exist ({torch.cuda.device_count()} CUDA device(s) visible)")
        return torch.device("cuda", index)
    raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """auto -> bfloat16 on CUDA; on the CPU what fpcli.model.cpu_dtype measured best (bfloat16 with native bf16)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else cpu_auto_dtype()
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be auto, {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def check_attention(attn: str, device: torch.device, dtype: torch.dtype) -> None:
    if attn not in ATTENTION_NAMES:
        raise ValueError(f"attn must be one of {', '.join(ATTENTION_NAMES)}, got {attn!r}")
    if attn == "flash_attention_2":
        if importlib.util.find_spec("flash_attn") is None:
            raise ModelError(
                "attention flash_attention_2 needs the flash-attn package (pip install flash-attn); use sdpa"
            )
        if device.type != "cuda" or dtype == torch.float32:
            raise ModelError("attention flash_attention_2 runs only on CUDA in bfloat16 or float16; use sdpa")


def load_model(
    spec: str | Path | ResolvedModel,
    layout: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    attn: str = "sdpa",
    vision_only: bool = False,
    progress: Progress | None = None,
) -> VideoLLM:
    """Load the model named by `spec`: profile name, Hugging Face id or local checkpoint directory.

    `spec` may also be what `resolve_model(spec, layout)` returned (it carries its layout): a caller that needed the
    default frame count before loading resolves once.
    """
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    check_attention(attn, torch_device, torch_dtype)
    resolved = spec if isinstance(spec, ResolvedModel) else resolve_model(spec, layout, progress=progress)
    if resolved.layout in QWEN_LAYOUTS:  # Qwen-VL: its own class and loader
        from fpcli.model.qwen.loading import load_qwen

        return load_qwen(resolved, torch_device, torch_dtype, attn, vision_only, progress)
    start = time.perf_counter()
    if progress is not None:
        progress("load", 0, 1)
    config = _load_config(resolved.path)
    preprocessor = Preprocessor.from_dir(resolved.path)
    if (preprocessor.height, preprocessor.width) != (config.vision_config.image_size,) * 2:
        raise ModelError(
            f"{resolved.path}: preprocessor size {preprocessor.height}x{preprocessor.width} does not match the vision "
            f"tower's image size {config.vision_config.image_size}"
        )
    if vision_only:
        model, tokenizer = None, None
        tower, projector, newline = _load_vision(resolved.path, config, torch_device, torch_dtype, attn)
    else:
        model, tokenizer = _load_full(resolved.path, torch_device, torch_dtype, attn)
        parts = model.model
        tower, projector, newline = parts.vision_tower, parts.multi_modal_projector, parts.image_newline
    vision = VisionParts(
        tower=tower,
        projector=projector,
        image_newline=newline,
        feature_layer=config.vision_feature_layer,
        select_strategy=config.vision_feature_select_strategy,
        patches_per_side=config.vision_config.image_size // config.vision_config.patch_size,
        layout=resolved.layout,
    )
    if progress is not None:
        progress("load", 1, 1)
    return VideoLLM(
        name=resolved.name,
        path=resolved.path,
        layout=resolved.layout,
        default_frames=resolved.default_frames,
        device=torch_device,
        dtype=torch_dtype,
        load_s=time.perf_counter() - start,
        config=config,
        preprocessor=preprocessor,
        vision=vision,
        model=model,
        tokenizer=tokenizer,
    )


def _load_config(path: Path):
    from transformers import AutoConfig

    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        raise ModelError(f"cannot read {path / 'config.json'}: not a JSON object") from None
    if model_type != "llava_onevision":
        original = model_type in ("llava", "llava_qwen", "llava_llama")  # LLaVA-NeXT's own model types
        hint = " (an original LLaVA-NeXT checkpoint? run `forestprune convert` first)" if original else ""
        raise ModelError(f"{path} is a {model_type!r} checkpoint, not llava_onevision{hint}")
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"cannot read {path / 'config.json'}: {str(exc).strip().splitlines()[0]}") from None


def _load_full(path: Path, device: torch.device, dtype: torch.dtype, attn: str):
    return load_pretrained(path, "LlavaOnevisionForConditionalGeneration", device, dtype, attn)


def load_pretrained(path: Path, class_name: str, device: torch.device, dtype: torch.dtype, attn: str):
    """(model, tokenizer) of transformers' `class_name` from `path`: safetensors only, no remote code, offline."""
    import transformers
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # progress is reported through `progress`, on the CLI's terms
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False, local_files_only=True)
        model = getattr(transformers, class_name).from_pretrained(
            path,
            dtype=dtype,
            attn_implementation=attn,
            use_safetensors=True,
            trust_remote_code=False,
            local_files_only=True,
            device_map={"": device} if device.type == "cuda" else None,
        )
    except torch.OutOfMemoryError:
        raise ModelError(f"CUDA out of memory while loading {path}; use a smaller model or another GPU") from None
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load {path}: {str(exc).strip().splitlines()[0]}") from None
    return model.to(device).eval(), tokenizer


def vision_keys(path: Path, prefixes: tuple[str, ...] = tuple(_VISION_PREFIXES)) -> dict[str, list[str]]:
    """Shard file -> the checkpoint keys in it that start with one of `prefixes` (after an optional "model.")."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
    else:
        from safetensors import safe_open

        with safe_open(path / "model.safetensors", framework="pt") as f:
            weight_map = {k: "model.safetensors" for k in f.keys()}
    shards: dict[str, list[str]] = {}
    for key, shard in weight_map.items():
        if key.removeprefix("model.").startswith(prefixes):
            shards.setdefault(shard, []).append(key)
    return shards


def _load_vision(path: Path, config, device: torch.device, dtype: torch.dtype, attn: str):
    """Build tower + projector from the config and fill them from the checkpoint's vision tensors only."""
    from safetensors import safe_open
    from transformers import AutoModel
    from transformers.initialization import no_init_weights
    from transformers.models.llava_onevision.modeling_llava_onevision import LlavaOnevisionMultiModalProjector

    config.vision_config._attn_implementation = attn
    with no_init_weights():  # every parameter is overwritten from the checkpoint below
        tower = AutoModel.from_config(config.vision_config)
        projector = LlavaOnevisionMultiModalProjector(config)
    states: dict[str, dict] = {"tower": {}, "projector": {}, "newline": {}}
    for shard, keys in vision_keys(path).items():
        with safe_open(path / shard, framework="pt") as f:
            for key in keys:
                name = key.removeprefix("model.")
                prefix = next(p for p in _VISION_PREFIXES if name.startswith(p))
                # Hub checkpoints saved by transformers 4 (all llava-hf ones) nest SigLIP under
                # `vision_model.`; transformers 5's SiglipVisionModel has no such level.
                local = name.removeprefix(prefix).removeprefix("vision_model.")
                states[_VISION_PREFIXES[prefix]][local] = f.get_tensor(key)
    if "" not in states["newline"]:
        raise ModelError(f"{path}: checkpoint has no image_newline tensor")
    for part, module in (("tower", tower), ("projector", projector)):
        missing, unexpected = module.load_state_dict(states[part], strict=False)
        if missing or unexpected:
            what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
            raise ModelError(f"{path}: vision weights do not match the config ({part}: {what})")
    tower = tower.to(device=device, dtype=dtype).eval()
    projector = projector.to(device=device, dtype=dtype).eval()
    return tower, projector, states["newline"][""].to(device=device, dtype=dtype)
