"""Which frames a model sees: each layout's sampling rule, and --frames / --fps over it (one rule for every caller).

  onevision, video      `default_frames` frames uniformly (the profile's 32 or 64)
  qwen2.5-vl, qwen3-vl  2 fps capped at `default_frames` (768), at least 4 frames (a clip too short for 4 at that
                        rate gets 4 uniform ones), as qwen-vl-utils and transformers' Qwen video processors sample
Given `frames` alone: that many uniformly, any layout. Given `fps`: a frame every 1/fps s, at most `frames` when given,
else the layout's cap (Qwen-VL's 768, LLaVA's MAX_FRAMES). Padding an odd count to even is Qwen-VL's preprocessing
(fpcli.model.qwen.video_input). Torch-free: the CLI imports it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from fpcli.model.profiles import Progress
    from fpcli.video import VideoClip

MAX_FRAMES = 1024  # the most frames any sampling takes (the cap of a rate on LLaVA layouts)
# layout -> (default rate, fewest frames) for the layouts that sample by rate (qwen-vl-utils' FPS, FPS_MIN_FRAMES)
RATE_LAYOUTS: dict[str, tuple[float, int]] = {"qwen2.5-vl": (2.0, 4), "qwen3-vl": (2.0, 4)}


@dataclass(frozen=True)
class SamplingRule:
    """A layout's default sampling: `frames` uniform frames, or with `fps` that rate capped at `frames`."""

    frames: int
    fps: float | None = None
    min_frames: int = 1  # a rate that yields fewer frames: this many uniform ones instead

    @property
    def cap(self) -> int:
        """Most frames a rate may take when no frame count is given."""
        return self.frames if self.fps is not None else MAX_FRAMES


def sampling_rule(layout: str, default_frames: int) -> SamplingRule:
    """The rule of `layout` with the model's default frame count (fpcli.model.profiles)."""
    if layout in RATE_LAYOUTS:
        fps, fewest = RATE_LAYOUTS[layout]
        return SamplingRule(default_frames, fps, fewest)
    return SamplingRule(default_frames)


def sampling_options(frames: int | None, fps: float | None, rule: Callable[[], SamplingRule]) -> dict[str, Any]:
    """`sample_frames` keyword arguments after the path (what a feature cache keys on). `rule` is called only when
    the layout matters (neither given, or a rate without a count): it may have to resolve the model."""
    if fps is None and frames is not None:
        return {"num_frames": frames}
    if frames is not None:
        return {"num_frames": frames, "fps": fps, "max_frames": frames}
    chosen = rule()
    rate = chosen.fps if fps is None else fps
    if rate is None:
        return {"num_frames": chosen.frames}
    return {"num_frames": chosen.cap, "fps": rate, "max_frames": chosen.cap}


def sample_clip(
    path: str | os.PathLike,
    rule: Callable[[], SamplingRule] | SamplingRule,
    frames: int | None = None,
    fps: float | None = None,
    progress: Progress | None = None,
) -> VideoClip:
    """Sample `path` by the module's rules (`rule`: the model's, or a callable giving it); VideoError for anything
    unreadable."""
    from fpcli.video import sample_frames

    get_rule = rule if callable(rule) else lambda: rule
    options = sampling_options(frames, fps, get_rule)
    clip = sample_frames(path, **options, progress=progress)
    if "fps" in options and frames is None:
        fewest = get_rule().min_frames
        if len(clip) < fewest < clip.total_frames:
            clip = sample_frames(path, num_frames=fewest, progress=progress)
    return clip
