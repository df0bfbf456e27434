"""Decoded frame -> RGB array the way it is meant to be seen."""

from __future__ import annotations

import numpy as np
from av import VideoFrame


def frame_to_rgb(frame: VideoFrame, size: tuple[int, int] | None = None, rotation: int | None = None) -> np.ndarray:
    """uint8 [H, W, 3] RGB of `frame`, turned upright by its display matrix (may be a view).

    Phone videos store the sensor image plus a display matrix; `frame.rotation` is the
    counter-clockwise angle it asks for, and np.rot90 turns counter-clockwise for k > 0.
    `size` (width, height before rotation) and `rotation` override the frame's own, so that a
    stream changing resolution or orientation midway still gives frames that stack.
    """
    if size is not None and (frame.width, frame.height) != size:
        rgb = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
    else:
        rgb = frame.to_ndarray(format="rgb24")
    turns = round((frame.rotation if rotation is None else rotation) / 90) % 4
    return np.rot90(rgb, turns) if turns else rgb
