"""What every command does before its real work: expand the VIDEO arguments, pick and load the model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fpcli.cli.errors import usage_error
from fpcli.cli.options import ModelSettings
from fpcli.cli.progress import Reporter

if TYPE_CHECKING:
    from fpcli.model import VideoLLM

GPU_DEFAULT = "llava-video-7b"
CPU_DEFAULT = "llava-ov-0.5b"


def expand_videos(paths: list[Path]) -> list[Path]:
    """Files as given, folders as their video files (sorted); checked before any model loads."""
    from fpcli.video import VIDEO_EXTENSIONS, list_videos

    videos: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = list_videos(path)
            if not found:
                looked_for = " ".join(sorted(VIDEO_EXTENSIONS))
                raise usage_error("no video files in folder", path, hint=f"looked for {looked_for}")
            videos.extend(found)
        elif path.exists():
            videos.append(path)
        else:
            raise usage_error("no such file or folder", path)
    return videos


def default_model(device: str, reporter: Reporter) -> str:
    """llava-video-7b when CUDA can be used, llava-ov-0.5b otherwise; says which on stderr."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        reporter.message(f"No --model given: using {GPU_DEFAULT} (CUDA is available).")
        return GPU_DEFAULT
    reporter.message(f"No --model given: using {CPU_DEFAULT} (no CUDA device; {GPU_DEFAULT} needs a GPU).")
    return CPU_DEFAULT


def load(settings: ModelSettings, reporter: Reporter, vision_only: bool = False) -> VideoLLM:
    """Load the model once for the whole command."""
    from fpcli.model import load_model

    spec = settings.model or default_model(settings.device, reporter)
    llm = load_model(
        spec,
        layout=settings.layout,
        device=settings.device,
        dtype=settings.dtype,
        attn=settings.attn,
        vision_only=vision_only,
        progress=reporter.callback,
    )
    part = "vision tower of " if vision_only else ""
    dtype = str(llm.dtype).removeprefix("torch.")
    reporter.message(f"Loaded {part}{llm.name} ({llm.layout} layout) on {llm.device}, {dtype}, in {llm.load_s:.1f} s.")
    return llm
