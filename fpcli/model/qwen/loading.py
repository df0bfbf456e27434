"""`load_qwen`: a resolved Qwen2.5-VL / Qwen3-VL checkpoint -> `QwenVideoLLM`, with the project's loading rules.

transformers' own class for the config's model_type, safetensors only, no remote code, local files only (through
`fpcli.model.loading.load_pretrained`); the video preprocessing comes from the checkpoint's processor configs.
"""

from __future__ import annotations

import json
import time

import torch

from fpcli.model.errors import ModelError
from fpcli.model.loading import load_pretrained
from fpcli.model.profiles import Progress, ResolvedModel
from fpcli.model.qwen.arch import ARCHS, LAYOUT_TO_ARCH
from fpcli.model.qwen.model import QwenVideoLLM
from fpcli.model.qwen.video_input import VideoSpec


def load_qwen(
    resolved: ResolvedModel, device: torch.device, dtype: torch.dtype, attn: str, progress: Progress | None = None
) -> QwenVideoLLM:
    """Load the checkpoint `resolved` points at; its config's model_type must match the resolved layout."""
    arch = LAYOUT_TO_ARCH[resolved.layout]
    try:
        model_type = json.loads((resolved.path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        raise ModelError(f"cannot read {resolved.path / 'config.json'}: not a JSON object") from None
    if model_type != arch.model_type:
        raise ModelError(
            f"{resolved.path} is a {model_type!r} checkpoint, not {arch.model_type} (layout {resolved.layout}); "
            f"Qwen-VL layouts need one of {', '.join(ARCHS)}"
        )
    start = time.perf_counter()
    if progress is not None:
        progress("load", 0, 1)
    spec = VideoSpec.from_dir(resolved.path, arch.qwen3_video_rules)
    model, tokenizer = load_pretrained(resolved.path, arch.class_name, device, dtype, attn)
    vision = model.config.vision_config
    if (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) != (
        spec.patch_size, spec.merge_size, spec.temporal_patch_size,
    ):  # fmt: skip
        raise ModelError(f"{resolved.path}: the video preprocessor's patch/merge/temporal sizes do not match the model")
    if progress is not None:
        progress("load", 1, 1)
    return QwenVideoLLM(
        name=resolved.name,
        path=resolved.path,
        arch=arch,
        default_frames=resolved.default_frames,
        device=device,
        dtype=dtype,
        load_s=time.perf_counter() - start,
        config=model.config,
        spec=spec,
        model=model,
        tokenizer=tokenizer,
    )
