"""Warnings about what sampling could not give as asked: a clip that is not what the numbers suggest is a result
measured on other input, so the user is told (the CLI prints them on stderr and in the JSON's `warnings`).

    more frames asked for than the video (or its time bound) has: fewer distinct frames, or repeats
    a rate above the video's own frame rate: every frame, not the rate asked for
    a file whose header states more frames than can be read: cut short (see sampling._cut_short)
"""

from __future__ import annotations

import numpy as np


def too_few_frames(chosen: np.ndarray, num_frames: int) -> list[str]:
    """A warning when uniform sampling of `num_frames` found fewer distinct frames. chosen: [T] int64 indices."""
    distinct = int(np.unique(chosen).shape[0])
    if distinct >= num_frames:
        return []
    took = "took each once" if chosen.shape[0] == distinct else f"repeated some to make {chosen.shape[0]}"
    return [f"asked for {num_frames} frames but only {distinct} distinct frames are there to sample; {took}"]


def rate_above_native(fps: float, native: float, picked: int) -> list[str]:
    """A warning when sampling at `fps` exceeds the video's average frame rate `native` (0: unknown, no warning)."""
    if native <= 0 or fps <= native * 1.001:
        return []
    return [f"sampling at {fps:g} fps is above the video's {native:.3g} fps: took every frame ({picked}) instead"]


def stated_seconds(stream_seconds: float | None, frames: int, fps_avg: float) -> float | None:
    """The duration a file's header states: its stream duration, or where the header counts more frames than that
    at the average rate, those frames. An AVI's duration comes from the index of what is there, its frame count
    from its main header: a cut AVI otherwise looks whole."""
    counted = frames / fps_avg if frames > 0 and fps_avg > 0 else None
    if stream_seconds is None:
        return counted
    return stream_seconds if counted is None else max(stream_seconds, counted)
