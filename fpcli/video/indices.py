"""Which frames to take: uniform over the whole video, or at a fixed rate."""

from __future__ import annotations

import numpy as np


def uniform_indices(total: int, num_frames: int) -> np.ndarray:
    """int64 [min(num_frames, total)] evenly spaced frame indices, first and last frame included.

    LLaVA-Video / LLaVA-OneVision evaluation takes linspace(0, total - 1, num_frames); their
    reference code truncates it (`dtype=int`), here it is rounded to the nearest index (halves
    up), which keeps the samples symmetric around the middle of the video. A video with fewer
    frames than asked gives all of them.
    """
    if num_frames >= total:
        return np.arange(total, dtype=np.int64)
    return np.floor(np.linspace(0, total - 1, num_frames) + 0.5).astype(np.int64)


def rate_picks(seconds: np.ndarray, duration: float, fps: float) -> np.ndarray:
    """int64 [T] the frame on screen at times 0, 1/fps, 2/fps, ... before `duration`, however many.

    seconds: [F] ascending frame times. Frame times rather than frame counts, so variable frame
    rate video is sampled evenly in time.
    """
    steps = max(int(np.ceil(duration * fps - 1e-9)), 1)
    times = np.arange(steps, dtype=np.float64) / fps  # [steps]
    picked = np.unique(np.searchsorted(seconds, times + 1e-9, side="right") - 1)
    return picked[picked >= 0].astype(np.int64)


def rate_indices(seconds: np.ndarray, duration: float, fps: float, max_frames: int) -> np.ndarray:
    """`rate_picks`, except that more than `max_frames` samples fall back to `max_frames` uniform
    ones over the whole video."""
    picked = rate_picks(seconds, duration, fps)
    if picked.shape[0] > max_frames:
        return uniform_indices(int(seconds.shape[0]), max_frames)
    return picked
