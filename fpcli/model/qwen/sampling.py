"""Which frames a Qwen-VL model sees: 2 fps by default with a frame cap, at least 4 frames, or a fixed count.

As qwen-vl-utils and transformers' Qwen video processors do: a rate (`fps`, default 2) capped at `max_frames`
(768), raised to `min_frames` (4) uniformly spaced frames for clips too short to give that many; `frames` asks for a
fixed uniform count instead. Padding an odd count to even is the preprocessing's job (fpcli.model.qwen.video_input).
"""

from __future__ import annotations

import os

from fpcli.model.profiles import QWEN_MAX_FRAMES, Progress
from fpcli.video import VideoClip, sample_frames

DEFAULT_FPS = 2.0
MIN_FRAMES = 4
MAX_FRAMES = QWEN_MAX_FRAMES


def sampling_options(frames: int | None = None, fps: float | None = None, max_frames: int | None = None) -> dict:
    """The `sample_frames` keyword arguments of the first sampling pass (what a feature cache keys on)."""
    if frames is not None:
        return {"num_frames": frames}
    return {"fps": DEFAULT_FPS if fps is None else fps, "max_frames": MAX_FRAMES if max_frames is None else max_frames}


def sample_clip(
    path: str | os.PathLike,
    frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    progress: Progress | None = None,
) -> VideoClip:
    """Sample `path` the way Qwen-VL expects (module docstring); VideoError for anything unreadable."""
    options = sampling_options(frames, fps, max_frames)
    clip = sample_frames(path, **options, progress=progress)
    if frames is None and len(clip) < MIN_FRAMES < clip.total_frames:
        clip = sample_frames(path, num_frames=MIN_FRAMES, progress=progress)
    return clip
