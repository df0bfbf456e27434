"""Open a video file and index its frames without decoding them.

One demux pass reads every packet header of the video stream (no decoding: a one-hour 720p
H.264 file takes a fraction of a second). Modern codecs put exactly one frame in a packet, so
sorting the packets' presentation timestamps gives the timestamp of every frame of a full
sequential decode, in order: frame index -> pts, exact even for variable frame rate, B-frames,
and containers that store no frame count (webm, mkv). The decoder checks this index against
what it actually decodes, and falls back to counting decoded frames where the two disagree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.container import InputContainer
from av.video.stream import VideoStream

from fpcli.video.errors import VideoError


@dataclass(frozen=True)
class FrameIndex:
    """Timestamps of a video stream's frames, from its packets.

    pts       int64 [F] presentation timestamps in `time_base` units, ascending (frame order)
    keyframe  bool [F] frame i starts a decodable run (seek target)
    seekable  pts are complete and distinct, so frames can be found by timestamp after a seek
    """

    pts: np.ndarray
    keyframe: np.ndarray
    time_base: Fraction
    last_duration: int
    seekable: bool

    @property
    def total(self) -> int:
        return int(self.pts.shape[0])

    def seconds(self) -> np.ndarray:
        """float64 [F] time of each frame since the first one."""
        # Multiply by the numerator and divide by the denominator, both exact integers: the quotient is then the
        # float nearest the true time (83/25 gives 3.32, where 83 * 0.04 gives 3.3200000000000003).
        ticks = (self.pts - self.pts[0]).astype(np.float64) * self.time_base.numerator
        return ticks / self.time_base.denominator


def open_video(path: str | os.PathLike) -> tuple[InputContainer, VideoStream]:
    """Open `path` and pick its video stream, or raise VideoError saying why there is none."""
    p = Path(path)
    if not p.exists():
        raise VideoError("file not found", p)
    if p.is_dir():
        raise VideoError("is a directory, not a video file", p)
    try:
        # metadata_errors: tags in a legacy encoding (or damaged) must not stop the video from loading
        container = av.open(str(p), mode="r", metadata_errors="replace")
    except av.FFmpegError as err:
        raise VideoError(f"not a video file ffmpeg can read ({ffmpeg_reason(err)})", p) from None
    except PermissionError:
        raise VideoError("permission denied", p) from None
    except OSError as err:
        raise VideoError(f"cannot read file ({err.strerror or err})", p) from None
    # ffmpeg opens still images as one-frame "videos" (image2, png_pipe, jpeg_pipe, ...).
    fmt = container.format.name
    if fmt == "image2" or fmt.endswith("_pipe"):
        container.close()
        raise VideoError("is an image, not a video", p)
    # Cover art in music files is a video stream flagged as an attached picture.
    videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not videos:
        audio_only = len(container.streams.audio) > 0
        container.close()
        raise VideoError("has no video stream (audio only)" if audio_only else "not a video file (no video stream)", p)
    return container, videos[0]


def index_frames(container: InputContainer, stream: VideoStream) -> FrameIndex:
    """Read every packet header of `stream` (no decoding) and index the frames they carry.

    Packets the demuxer marks as discarded (before an edit list's start) never become frames.
    A damaged file is indexed up to the point where demuxing fails.
    """
    pts: list[int | None] = []
    keyframe: list[bool] = []
    last_duration = 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.is_discard:
                continue
            pts.append(packet.pts)
            keyframe.append(bool(packet.is_keyframe))
            last_duration = int(packet.duration or 0)
    except av.FFmpegError:
        pass
    seekable = len(pts) > 0 and None not in pts
    pts_arr = np.array([-1 if t is None else t for t in pts], dtype=np.int64)
    order = np.argsort(pts_arr, kind="stable")
    pts_arr = pts_arr[order]
    key_arr = np.array(keyframe, dtype=bool)[order]
    seekable = seekable and bool(np.all(np.diff(pts_arr) > 0)) and bool(key_arr.any())
    time_base = stream.time_base or Fraction(1, 1)
    return FrameIndex(pts_arr, key_arr, time_base, last_duration, seekable)


def ffmpeg_reason(err: av.FFmpegError) -> str:
    """ffmpeg's own words for an error, without the file name PyAV appends."""
    return (getattr(err, "strerror", None) or str(err)).strip().rstrip(".").lower()
