"""`load_model`: spec -> a ready `VideoLLM`, a new one on every call (the caller holds it and reuses it).

The spec is resolved to a local checkpoint and its layout (fpcli.model.profiles), and the family that serves the
layout loads it (fpcli.model.families): safetensors only, no remote code, local files only. `vision_only=True` loads
just what encoding needs, never the LLM (what `forestprune stats` uses).
"""

from __future__ import annotations

from pathlib import Path

import fpcli.model.llava.loading  # noqa: F401  registers the LLaVA layouts' loader
import fpcli.model.qwen.loading  # noqa: F401  registers the Qwen-VL layouts' loader
from fpcli.model.base import VideoLLM
from fpcli.model.checkpoint import check_attention, resolve_device, resolve_dtype
from fpcli.model.families import loader_for
from fpcli.model.profiles import Progress, ResolvedModel, resolve_model


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
    return loader_for(resolved.layout)(resolved, torch_device, torch_dtype, attn, vision_only, progress)
