"""Model profiles (short names for known checkpoints) and `resolve_model`: spec -> local directory + layout.

A spec is a profile name (`llava-ov-0.5b`), a Hugging Face id (`llava-hf/llava-onevision-qwen2-7b-ov-hf`) or a local
checkpoint directory. Hub ids are looked up in the local cache first and downloaded only when the hub is reachable
and `HF_HUB_OFFLINE` is not set (fpcli.model.hub); either way the result is a directory that transformers loads
without the network.

The layout says how the visual tokens enter the LLM (see `fpcli.model.llava.sequence`):
  onevision  LLaVA-OneVision: bilinear pooling to ceil(h/2) x ceil(w/2), one newline after the whole video.
  video      LLaVA-Video: 2x2 average pooling, a newline after every row of every frame, time instruction.
  qwen2.5-vl, qwen3-vl  Qwen-VL: merged tokens with M-RoPE positions (see `fpcli.model.qwen`).
It comes from, in order: the caller, the profile, `forestprune.json` in the checkpoint directory (written by
`forestprune convert`), the architecture in config.json (Qwen-VL), else "onevision".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fpcli.model.errors import ModelError
from fpcli.model.hub import Progress, looks_like_hub_id, require_safetensors, snapshot

# config.json model_type -> layout, for the architectures a checkpoint's config names unambiguously.
MODEL_TYPE_LAYOUTS = {"qwen2_5_vl": "qwen2.5-vl", "qwen3_vl": "qwen3-vl"}
LLAVA_LAYOUTS = ("onevision", "video")  # fpcli.model.llava
QWEN_LAYOUTS = tuple(MODEL_TYPE_LAYOUTS.values())  # fpcli.model.qwen
LAYOUTS = LLAVA_LAYOUTS + QWEN_LAYOUTS
# The vision-tower extras (fpcli.prune.extras) each layout's encoder hands a pruning method besides its features:
# a method that needs one a layout lacks is refused before anything loads.
LAYOUT_EXTRAS = {"onevision": ("vision_attention", "vision_keys"), "video": ("vision_attention", "vision_keys"),
                 "qwen2.5-vl": (), "qwen3-vl": ()}
MAX_PIXELS_HINT = "leave out --max-pixels"
DTYPE_NAMES = ("bfloat16", "float16", "float32")  # what --dtype takes besides "auto"
ATTENTION_NAMES = ("sdpa", "eager", "flash_attention_2")  # attn_implementation values, the default first
# Qwen-VL samples at 2 fps (fpcli.model.sampling); its number here is the frame cap of that rate.
QWEN_MAX_FRAMES = 768
DEFAULT_FRAMES = {"onevision": 32, "video": 64, "qwen2.5-vl": QWEN_MAX_FRAMES, "qwen3-vl": QWEN_MAX_FRAMES}
# The most pixels a frame may be given (`max_pixels`): Qwen2.5-VL's image processor's max_pixels, the most any
# Qwen-VL processor gives one picture (16384 merged tokens of 28x28 pixels).
MAX_PIXELS_CAP = 16384 * 28 * 28
LAYOUT_FILE = "forestprune.json"
# Files a checkpoint needs at inference time; the rest of a hub repo (README, .bin duplicates, ...) is skipped.
_DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "tokenizer*"]


def check_max_pixels(layout: str, max_pixels: int | None) -> None:
    """ValueError when `max_pixels` (a per-frame pixel budget) is given for a layout whose frames are not sized by
    one (the LLaVA layouts resize every frame to the vision tower's square input)."""
    if max_pixels is not None and layout not in QWEN_LAYOUTS:
        raise ValueError(f"max_pixels applies to Qwen-VL models; the {layout} layout resizes every frame to the "
                         "vision tower's square input")


@dataclass(frozen=True)
class ModelProfile:
    """A known checkpoint: where it lives and how its visual tokens are laid out."""

    name: str
    repo_id: str
    layout: str
    default_frames: int
    needs_conversion: bool = False  # published only in the original LLaVA-NeXT format (see fpcli.model.llava.convert)


PROFILES: dict[str, ModelProfile] = {}


def register_profile(profile: ModelProfile) -> ModelProfile:
    """Add a profile to `PROFILES` under its name (a name can be registered once)."""
    if profile.layout not in LAYOUTS:
        raise ValueError(f"profile layout must be one of {', '.join(LAYOUTS)}, got {profile.layout!r}")
    if profile.name in PROFILES:
        raise ValueError(f"model profile {profile.name!r} is already registered")
    PROFILES[profile.name] = profile
    return profile


register_profile(ModelProfile("llava-ov-0.5b", "llava-hf/llava-onevision-qwen2-0.5b-ov-hf", "onevision", 32))
register_profile(ModelProfile("llava-ov-7b", "llava-hf/llava-onevision-qwen2-7b-ov-hf", "onevision", 32))
register_profile(ModelProfile("llava-ov-72b", "llava-hf/llava-onevision-qwen2-72b-ov-hf", "onevision", 32))
register_profile(ModelProfile("llava-video-7b", "lmms-lab/LLaVA-Video-7B-Qwen2", "video", 64, needs_conversion=True))
register_profile(ModelProfile("qwen2.5-vl-3b", "Qwen/Qwen2.5-VL-3B-Instruct", "qwen2.5-vl", QWEN_MAX_FRAMES))
register_profile(ModelProfile("qwen2.5-vl-7b", "Qwen/Qwen2.5-VL-7B-Instruct", "qwen2.5-vl", QWEN_MAX_FRAMES))
register_profile(ModelProfile("qwen3-vl-2b", "Qwen/Qwen3-VL-2B-Instruct", "qwen3-vl", QWEN_MAX_FRAMES))
register_profile(ModelProfile("qwen3-vl-4b", "Qwen/Qwen3-VL-4B-Instruct", "qwen3-vl", QWEN_MAX_FRAMES))
register_profile(ModelProfile("qwen3-vl-8b", "Qwen/Qwen3-VL-8B-Instruct", "qwen3-vl", QWEN_MAX_FRAMES))


@dataclass(frozen=True)
class ResolvedModel:
    """Where a spec's checkpoint is on disk and how to run it."""

    name: str  # the profile name, or the spec as given
    path: Path  # a local LlavaOnevisionForConditionalGeneration checkpoint directory
    layout: str
    default_frames: int
    profile: ModelProfile | None = None


def _layout_file(path: Path) -> str | None:
    marker = path / LAYOUT_FILE
    if not marker.is_file():
        return None
    try:
        layout = json.loads(marker.read_text()).get("layout")
    except (OSError, ValueError, AttributeError):
        raise ModelError(f"cannot read {marker}: expected JSON like {{\"layout\": \"video\"}}") from None
    if layout not in LAYOUTS:
        raise ModelError(f"{marker} names layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    return layout


def config_layout(path: Path) -> str | None:
    """The layout config.json's model_type implies (Qwen-VL), or None (LLaVA: the layout is not in the config)."""
    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        raise ModelError(f"cannot read {path / 'config.json'}: not a JSON object") from None
    return MODEL_TYPE_LAYOUTS.get(model_type)


def check_checkpoint_dir(path: Path) -> None:
    """Fail with a clear ModelError unless `path` holds a config and safetensors weights."""
    if not (path / "config.json").is_file():
        raise ModelError(f"{path} is not a model checkpoint: it has no config.json")
    require_safetensors(path)


def _frames(profile: ModelProfile | None, layout: str) -> int:
    return profile.default_frames if profile and layout == profile.layout else DEFAULT_FRAMES[layout]


def known_layout(spec: str | Path, layout: str | None = None) -> str | None:
    """The layout of `spec` when it is known without finding the checkpoint (given, or a profile's), else None."""
    profile = PROFILES.get(str(spec))
    return layout or (profile.layout if profile else None)


def known_default_frames(spec: str | Path, layout: str | None = None) -> int | None:
    """The default frame count of `spec` when it is known without finding the checkpoint (a profile, or a
    layout given); None when it depends on the checkpoint's forestprune.json (then `resolve_model` says)."""
    profile = PROFILES.get(str(spec))
    chosen = layout or (profile.layout if profile else None)
    return None if chosen is None else _frames(profile, chosen)


def resolve_model(spec: str | Path, layout: str | None = None, progress: Progress | None = None) -> ResolvedModel:
    """Turn a profile name, hub id or directory into a local checkpoint directory and its layout."""
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    spec_str = str(spec)
    profile = PROFILES.get(spec_str)
    if profile is not None:
        if profile.needs_conversion:
            from fpcli.model.llava.convert import ensure_converted  # heavy, and only needed for this profile

            path = Path(ensure_converted(profile.repo_id, progress=progress))
        else:
            path = snapshot(profile.repo_id, _DOWNLOAD_PATTERNS, progress=progress)
    elif Path(spec_str).expanduser().is_dir():
        path = Path(spec_str).expanduser().resolve()
    elif looks_like_hub_id(spec_str):
        path = snapshot(spec_str, _DOWNLOAD_PATTERNS, progress=progress)
    else:
        known = ", ".join(PROFILES)
        raise ModelError(f"model {spec_str!r} is not a profile ({known}), a local directory or a Hugging Face id")
    check_checkpoint_dir(path)
    chosen = layout or (profile.layout if profile else None) or _layout_file(path) or config_layout(path)
    chosen = chosen or "onevision"
    name = profile.name if profile else spec_str
    return ResolvedModel(name=name, path=path, layout=chosen, default_frames=_frames(profile, chosen), profile=profile)
