"""`load_llava`: a resolved LLaVA-OneVision-architecture checkpoint (layouts "onevision" and "video") -> `LlavaVideoLLM`.

transformers' LlavaOnevisionForConditionalGeneration through `fpcli.model.checkpoint.load_pretrained`; the frames'
preprocessing comes from the checkpoint's processor config. `vision_only=True` builds just the SigLIP tower, the
projector and the newline embedding from the config and reads only their tensors from the safetensors shards: the
LLM is never instantiated (what `forestprune stats` needs).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from fpcli.model.checkpoint import load_pretrained, vision_keys
from fpcli.model.errors import ModelError
from fpcli.model.families import register_loader
from fpcli.model.llava.encode import VisionParts
from fpcli.model.llava.model import LlavaVideoLLM
from fpcli.model.llava.preprocess import Preprocessor
from fpcli.model.profiles import LLAVA_LAYOUTS, Progress, ResolvedModel

# Checkpoint key prefixes of the vision side; transformers 5 saves the legacy names, older exports add "model.".
_VISION_PREFIXES = {"vision_tower.": "tower", "multi_modal_projector.": "projector", "image_newline": "newline"}


def load_llava(resolved: ResolvedModel, torch_device: torch.device, torch_dtype: torch.dtype, attn: str,
               vision_only: bool = False, progress: Progress | None = None) -> LlavaVideoLLM:
    """Load the checkpoint `resolved` points at (its config's model_type must be llava_onevision)."""
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
    return LlavaVideoLLM(
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
    for shard, keys in vision_keys(path, tuple(_VISION_PREFIXES)).items():
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


register_loader(LLAVA_LAYOUTS, load_llava)
