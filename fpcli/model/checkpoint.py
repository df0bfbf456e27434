"""What loading a checkpoint of any family shares: the device and dtype a user asks for, the attention check, and
reading weights by the project's rules (safetensors only, `trust_remote_code=False`, local files only: resolution
already put the checkpoint on disk). Each family's loader (fpcli.model.llava.loading, fpcli.model.qwen.loading)
builds on these.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

from fpcli.model.cpu_dtype import cpu_auto_dtype
from fpcli.model.errors import ModelError
from fpcli.model.profiles import ATTENTION_NAMES, DTYPE_NAMES

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}


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


def vision_keys(path: Path, prefixes: tuple[str, ...]) -> dict[str, list[str]]:
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
