"""`load_qwen`: a resolved Qwen2.5-VL / Qwen3-VL checkpoint -> `QwenVideoLLM`, with the project's loading rules.

transformers' own class for the config's model_type, safetensors only, no remote code, local files only (through
`fpcli.model.checkpoint.load_pretrained`); the video preprocessing comes from the checkpoint's processor configs.
`vision_only=True` builds just the vision tower from the config and reads only its tensors (`visual.*`, or
`model.visual.*` as transformers 5 saves Qwen3-VL): the LLM is never instantiated (what `forestprune stats` needs).
"""

from __future__ import annotations

import importlib
import json
import time

import torch

from fpcli.model.errors import ModelError
from fpcli.model.checkpoint import load_pretrained, vision_keys
from fpcli.model.families import register_loader
from fpcli.model.profiles import QWEN_LAYOUTS, Progress, ResolvedModel
from fpcli.model.qwen.arch import ARCHS, LAYOUT_TO_ARCH, QwenArch
from fpcli.model.qwen.model import QwenVideoLLM
from fpcli.model.qwen.video_input import VideoSpec


def load_qwen(
    resolved: ResolvedModel,
    device: torch.device,
    dtype: torch.dtype,
    attn: str,
    vision_only: bool = False,
    progress: Progress | None = None,
) -> QwenVideoLLM:
    """Load the checkpoint `resolved` points at; its config's model_type must match the resolved layout."""
    from transformers import AutoConfig

    arch = LAYOUT_TO_ARCH[resolved.layout]
    try:
        config = AutoConfig.from_pretrained(resolved.path, trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"cannot read {resolved.path / 'config.json'}: {str(exc).strip().splitlines()[0]}") from None
    if config.model_type != arch.model_type:
        raise ModelError(
            f"{resolved.path} is a {config.model_type!r} checkpoint, not {arch.model_type} (layout "
            f"{resolved.layout}); Qwen-VL layouts need one of {', '.join(ARCHS)}"
        )
    start = time.perf_counter()
    if progress is not None:
        progress("load", 0, 1)
    spec = VideoSpec.from_dir(resolved.path, arch.qwen3_video_rules)
    vision = config.vision_config
    if (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) != (
        spec.patch_size, spec.merge_size, spec.temporal_patch_size,
    ):  # fmt: skip
        raise ModelError(f"{resolved.path}: the video preprocessor's patch/merge/temporal sizes do not match the model")
    if vision_only:
        model, tokenizer = None, None
        visual = _load_visual(resolved, arch, config, device, dtype, attn)
    else:
        model, tokenizer = load_pretrained(resolved.path, arch.class_name, device, dtype, attn)
        tokenizer.chat_template = tokenizer.chat_template or _processor_chat_template(resolved.path)
        visual = model.model.visual
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
        config=config,
        spec=spec,
        visual=visual,
        model=model,
        tokenizer=tokenizer,
    )


def _processor_chat_template(path) -> str:
    """The chat template a processor-style checkpoint keeps in chat_template.json (the tokenizer had none)."""
    file = path / "chat_template.json"
    try:
        return json.loads(file.read_text())["chat_template"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ModelError(f"{path} has no chat template (tokenizer_config.json, chat_template.jinja or .json)") from None


def _load_visual(resolved: ResolvedModel, arch: QwenArch, config, device: torch.device, dtype: torch.dtype, attn: str):
    """The vision tower alone, built from the config and filled from the checkpoint's vision tensors."""
    from safetensors import safe_open
    from transformers.initialization import no_init_weights

    tower_class = getattr(importlib.import_module(arch.vision_module), arch.vision_class)
    config.vision_config._attn_implementation = attn
    with no_init_weights():  # every parameter is overwritten from the checkpoint below
        tower = tower_class._from_config(config.vision_config)
    state = {}
    for shard, keys in vision_keys(resolved.path, ("visual.",)).items():
        with safe_open(resolved.path / shard, framework="pt") as f:
            for key in keys:
                state[key.removeprefix("model.").removeprefix("visual.")] = f.get_tensor(key)
    missing, unexpected = tower.load_state_dict(state, strict=False)
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise ModelError(f"{resolved.path}: vision weights do not match the config ({what})")
    return tower.to(device=device, dtype=dtype).eval()


register_loader(QWEN_LAYOUTS, load_qwen)
