"""VideoClip: the frames sampled from one video, with where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class VideoClip:
    """Frames sampled from `path`, in display orientation.

    frames      uint8 [T, H, W, 3] RGB
    indices     int64 [T] non-decreasing positions of the frames in a full sequential decode (an index
                repeats only with the "floor"/"segment" rules on a video shorter than asked)
    timestamps  float64 [T] seconds since the first frame
    fps         average frame rate of the stream
    duration    seconds from the first frame to the end of the last one
    total_frames  frames in the whole stream (what `indices` index into)
    warnings    what the caller should tell the user: frames capped, a file cut short
    """

    path: str
    frames: np.ndarray
    indices: np.ndarray
    timestamps: np.ndarray
    fps: float
    duration: float
    total_frames: int
    warnings: list[str] = field(default_factory=list)

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    def __len__(self) -> int:
        return int(self.frames.shape[0])
