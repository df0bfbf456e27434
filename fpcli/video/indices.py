"""Which frames to take: uniform over the whole video or a time bound, MVBench's segment
midpoints, or at a fixed rate."""

from __future__ import annotations

import numpy as np

# "round": linspace rounded to the nearest index (the default: samples symmetric around the middle);
# "floor": linspace truncated, np.linspace(0, n - 1, F, dtype=int) as LLaVA's and the ForestPrune
#          authors' evaluation code does, repeats included when the video has fewer than F frames;
# "segment": the middle frame of each of F equal segments, MVBench's get_index (authors' model_mvbench.py).
INDEX_RULES = ("round", "floor", "segment")


def uniform_indices(total: int, num_frames: int, rule: str = "round") -> np.ndarray:
    """int64 evenly spaced frame indices over `total` frames, first and last included.

    "round": min(num_frames, total) indices, all frames when the video has fewer than asked.
    "floor": exactly num_frames indices, truncated like the reference code (10 frames, 3 asked:
    [0, 4, 9]; 3 frames, 5 asked: [0, 0, 1, 1, 2]).
    """
    if rule == "floor":
        return np.linspace(0, total - 1, num_frames).astype(np.int64)
    if num_frames >= total:
        return np.arange(total, dtype=np.int64)
    return np.floor(np.linspace(0, total - 1, num_frames) + 0.5).astype(np.int64)


def segment_indices(
    num_frames: int, fps: float, last: int, start: float | None = None, end: float | None = None
) -> np.ndarray:
    """int64 [num_frames] MVBench's frame choice: the bound [start, end] seconds becomes frames
    round(start * fps) .. round(end * fps) (Python rounding, halves to even), clipped to [0, last];
    an empty range grows to num_frames frames; it is cut into num_frames equal segments and the
    middle frame of each (truncated) is taken. No bound: the whole video."""
    start_idx = 0 if start is None else max(0, round(start * fps))
    end_idx = last if end is None else min(round(end * fps), last)
    if end_idx <= start_idx:
        end_idx = min(start_idx + max(1, num_frames), last)
    size = float(end_idx - start_idx + 1) / num_frames
    picked = [min(last, max(0, start_idx + int(size * i + size / 2))) for i in range(num_frames)]
    return np.array(picked, dtype=np.int64)


def bounded_indices(
    seconds: np.ndarray, num_frames: int, rule: str, start: float | None, end: float | None, fps: float
) -> np.ndarray:
    """int64 uniform indices (by `rule`) over the frames shown in [start, end] seconds (either may be
    None: the video's start or end). seconds: [F] ascending frame times. A bound between two frames
    takes the frame on screen at `start`."""
    total = int(seconds.shape[0])
    if rule == "segment":
        return segment_indices(num_frames, fps, total - 1, start, end)
    lo = -np.inf if start is None else start - 1e-9
    hi = np.inf if end is None else end + 1e-9
    inside = np.flatnonzero((seconds >= lo) & (seconds <= hi))  # [M]
    if inside.size == 0:
        on_screen = int(np.searchsorted(seconds, lo, side="right")) - 1
        inside = np.array([min(max(on_screen, 0), total - 1)], dtype=np.int64)
    return inside[uniform_indices(int(inside.size), num_frames, rule)].astype(np.int64)


def rate_picks(seconds: np.ndarray, duration: float, fps: float) -> np.ndarray:
    """int64 [T] the frame on screen at times 0, 1/fps, 2/fps, ... before `duration`, however many.

    seconds: [F] ascending frame times. Frame times rather than frame counts, so variable frame
    rate video is sampled evenly in time.
    """
    steps = max(int(np.ceil(duration * fps - 1e-9)), 1)
    times = np.arange(steps, dtype=np.float64) / fps  # [steps]
    picked = np.unique(np.searchsorted(seconds, times + 1e-9, side="right") - 1)
    return picked[picked >= 0].astype(np.int64)


def capped_rule(rule: str) -> str:
    """The uniform rule a capped rate sampling falls back to ("segment" counting as "floor")."""
    return "round" if rule == "round" else "floor"
