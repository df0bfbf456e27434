"""Model profiles (short names for known checkpoints) and `resolve_model`: spec -> local directory + layout.

A spec is a profile name (`llava-ov-0.5b`), a Hugging Face id (`llava-hf/llava-onevision-qwen2-7b-ov-hf`) or a local
checkpoint directory. Hub ids are looked up in the local cache first and downloaded only when the hub is reachable
and `HF_HUB_OFFLINE` is not set; either way the result is a directory that transformers loads without the network.

The layout says how the visual tokens enter the LLM (see `fpcli.model.sequence`):
  onevision  LLaVA-OneVision: bilinear pooling to ceil(h/2) x ceil(w/2), one newline after the whole video.
  video      LLaVA-Video: 2x2 average pooling, a newline after every row of every frame, time instruction.
It comes from, in order: the caller, the profile, `forestprune.json` in the checkpoint directory (written by
`forestprune convert`), else "onevision".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fpcli.model.errors import ModelError

LAYOUTS = ("onevision", "video")
DEFAULT_FRAMES = {"onevision": 32, "video": 64}
LAYOUT_FILE = "forestprune.json"
# Files a checkpoint needs at inference time; the rest of a hub repo (README, .bin duplicates, ...) is skipped.
_DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "tokenizer*"]

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ModelProfile:
    """A known checkpoint: where it lives and how its visual tokens are laid out."""

    name: str
    repo_id: str
    layout: str
    default_frames: int
    needs_conversion: bool = False  # published only in the original LLaVA-NeXT format (see fpcli.model.convert)


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


@dataclass(frozen=True)
class ResolvedModel:
    """Where a spec's checkpoint is on disk and how to run it."""

    name: str  # the profile name, or the spec as given
    path: Path  # a local LlavaOnevisionForConditionalGeneration checkpoint directory
    layout: str
    default_frames: int
    profile: ModelProfile | None = None


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as the environment says now, or as huggingface_hub read it at import."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return flag or bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir() -> Path:
    """The hub cache as the environment says *now* (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _fetch_from_hub(repo_id: str) -> Path:
    """A local snapshot of `repo_id`: from the cache, else downloaded (unless offline)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    cache_dir = hub_cache_dir()
    how = f"download it with `hf download {repo_id}` on a machine with internet access, or pass a local directory"
    try:  # LocalEntryNotFoundError (an OSError) when the snapshot is not cached
        return Path(
            snapshot_download(repo_id, cache_dir=cache_dir, allow_patterns=_DOWNLOAD_PATTERNS, local_files_only=True)
        )
    except (OSError, ValueError):
        pass
    if hub_offline():
        raise ModelError(
            f"model {repo_id} is not in the local Hugging Face cache ({cache_dir}) and HF_HUB_OFFLINE is set; {how}"
        )
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache_dir, allow_patterns=_DOWNLOAD_PATTERNS))
    except GatedRepoError:
        raise ModelError(
            f"model {repo_id} is gated on the Hugging Face hub; accept its licence and run `hf auth login`"
        ) from None
    except RepositoryNotFoundError:
        raise ModelError(
            f"model {repo_id} was not found on the Hugging Face hub (check the id, or pass a local directory)"
        ) from None
    except Exception as exc:  # network failures come as many types (httpx, OSError, HfHubHTTPError, ...)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"model {repo_id} is not cached and the hub is unreachable ({first_line}); {how}") from None


def looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "~")) and " " not in spec


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


def check_checkpoint_dir(path: Path) -> None:
    """Fail with a clear ModelError unless `path` holds a config and safetensors weights."""
    if not (path / "config.json").is_file():
        raise ModelError(f"{path} is not a model checkpoint: it has no config.json")
    if (path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file():
        return
    if list(path.glob("*.bin")) or list(path.glob("*.pt")) or list(path.glob("*.pth")):
        raise ModelError(f"{path} has only pickle weights (.bin/.pt); forestprune loads safetensors only")
    raise ModelError(f"{path} has no model weights (model.safetensors or model.safetensors.index.json)")


def _frames(profile: ModelProfile | None, layout: str) -> int:
    return profile.default_frames if profile and layout == profile.layout else DEFAULT_FRAMES[layout]


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
            from fpcli.model.convert import ensure_converted  # heavy, and only needed for this profile

            path = Path(ensure_converted(profile.repo_id, progress=progress))
        else:
            path = _fetch_from_hub(profile.repo_id)
    elif Path(spec_str).expanduser().is_dir():
        path = Path(spec_str).expanduser().resolve()
    elif looks_like_hub_id(spec_str):
        path = _fetch_from_hub(spec_str)
    else:
        known = ", ".join(PROFILES)
        raise ModelError(f"model {spec_str!r} is not a profile ({known}), a local directory or a Hugging Face id")
    check_checkpoint_dir(path)
    chosen = layout or (profile.layout if profile else None) or _layout_file(path) or "onevision"
    name = profile.name if profile else spec_str
    return ResolvedModel(name=name, path=path, layout=chosen, default_frames=_frames(profile, chosen), profile=profile)
