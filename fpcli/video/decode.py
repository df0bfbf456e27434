"""Decode the frames at given indices, exactly and fast.

Two ways to get frame i of a video, both giving the frame a full sequential decode gives:

- `decode_by_seeking`: seek to the keyframe before each wanted frame, decode forward to it,
  recognise it by its timestamp in the FrameIndex. When the next wanted frame is in the same
  group of pictures (or only a few frames past it) decoding simply goes on, so dense sampling
  costs at most one forward pass. For H.264 the decoder also skips the frames no other frame
  references (skip_frame=NONREF) unless they are wanted: about half of all frames with
  B-frames, never needed to reconstruct the others, so the result is unchanged.
  Every decoded frame is checked against the index: its timestamp must be one the index knows,
  after the previous one, and (without skipping) exactly the next. Anything else (a timestamp
  the index does not know, a frame the decoder dropped, a seek that lands past its target even
  after backing off, an undecodable packet) raises IndexMismatch, and the caller falls back to
  counting.
- `decode_sequentially`: plain forward decode, counting frames. The ground truth, used for files
  whose packets cannot be indexed (no timestamps, damaged) or where the index was wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import av
import numpy as np
from av import VideoFrame
from av.container import InputContainer
from av.video.stream import VideoStream

from fpcli.video.probe import FrameIndex

# Seek only when it skips more than this many frames: a seek throws away the frames in flight
# and restarts the frame-thread pipeline, so for short gaps decoding on is as fast.
SEEK_GAP = 32

# Seeking in some containers (MPEG-TS, ...) is approximate and can land past the keyframe
# asked for; then seek again this many seconds further back.
SEEK_BACKOFF_S = (0.0, 1.0, 5.0, 30.0)

# Codecs whose NONREF skipping follows a flag meaning "no picture references this one"
# (H.264 nal_ref_idc == 0) and where a packet is one frame, so a frame missing from the output
# can only be a skipped one. Not HEVC: its "non-reference" pictures may still be referenced
# from higher temporal sub-layers, which phones use for high-frame-rate video.
SKIPPABLE_CODECS = frozenset({"h264"})

Keep = Callable[[int, VideoFrame], None]


class IndexMismatch(Exception):
    """What the decoder produced does not match the packet index."""


def prepare(stream: VideoStream, frame_threads: bool) -> None:
    """Let the decoder use all cores. Frame threading is bit-exact on intact streams, but when a
    packet is damaged it can lose the frames in flight with it, so damaged files are decoded
    with slice threads only: every frame that can be decoded comes out."""
    stream.thread_type = "AUTO" if frame_threads else "SLICE"
    stream.codec_context.thread_count = 0


def decode_by_seeking(
    container: InputContainer, stream: VideoStream, index: FrameIndex, wanted: np.ndarray, keep: Keep
) -> None:
    """Call keep(i, frame) for each i of `wanted` (ascending, unique), in order."""
    key_pos = np.flatnonzero(index.keyframe)  # [K]
    before = np.searchsorted(key_pos, wanted, side="right") - 1  # [T] keyframe at or before target
    starts = np.where(before >= 0, key_pos[np.maximum(before, 0)], 0)  # none: start of stream
    wanted_pts = set(index.pts[wanted].tolist()) if stream.codec_context.name in SKIPPABLE_CODECS else None
    frames: Iterator[tuple[int, VideoFrame]] | None = None
    pos = -1
    for target, start in zip(wanted.tolist(), starts.tolist()):
        if frames is None or start > pos + SEEK_GAP:
            frames = _frames_from(container, stream, index, start, wanted_pts)
        for pos, frame in frames:
            if pos == target:
                keep(target, frame)
                break
        else:
            raise IndexMismatch(f"stream ended before frame {target}")


def _frames_from(
    container: InputContainer, stream: VideoStream, index: FrameIndex, start: int, wanted_pts: set[int] | None
) -> Iterator[tuple[int, VideoFrame]]:
    """(index, frame) for the frames from the keyframe `start` (or one before it) on: all of them,
    or, given `wanted_pts`, those plus the reference frames."""
    for back in SEEK_BACKOFF_S:
        try:
            yield from _decode_after_seek(container, stream, index, start, wanted_pts, back)
            return
        except _Overshoot:
            continue
    raise IndexMismatch(f"no seek reached frame {start}")


class _Overshoot(Exception):
    """The seek landed past the frame it was for; raised before anything was yielded."""


def _decode_after_seek(
    container: InputContainer, stream: VideoStream, index: FrameIndex, start: int, wanted_pts: set[int] | None,
    back: float,
) -> Iterator[tuple[int, VideoFrame]]:
    pts = index.pts
    context = stream.codec_context
    try:
        container.seek(int(pts[start]) - round(back / index.time_base), stream=stream, backward=True)
    except av.FFmpegError as err:
        raise IndexMismatch(f"seek failed: {err}") from None
    expected = -1  # next frame index; -1 until the decoder reaches a keyframe
    for packet in _packets(container, stream, strict=True):
        if wanted_pts is not None:  # read when the packet is submitted, also with frame threads
            context.skip_frame = "DEFAULT" if packet.pts in wanted_pts else "NONREF"
        try:
            decoded = packet.decode()
        except av.FFmpegError as err:
            raise IndexMismatch(f"undecodable packet: {err}") from None
        for frame in decoded:
            pos = expected if 0 <= expected < len(pts) and pts[expected] == frame.pts else _position(pts, frame.pts)
            if expected < 0:
                if pos > start:
                    raise _Overshoot
                if not (index.keyframe[pos] or pos == 0):
                    continue  # leading pictures of an open GOP: their references are before the seek
            elif pos < expected or (pos != expected and wanted_pts is None):
                raise IndexMismatch(f"decoder gave frame {pos}, index expected {expected}")
            expected = pos + 1
            yield pos, frame
    if expected < 0:
        raise _Overshoot  # nothing decodable between where the seek landed and the end


def _position(pts: np.ndarray, value: int | None) -> int:
    if value is None:
        raise IndexMismatch("decoded frame without timestamp")
    pos = int(np.searchsorted(pts, value))
    if pos == len(pts) or pts[pos] != value:
        raise IndexMismatch(f"decoded frame with pts {value} is not in the index")
    return pos


def decode_sequentially(container: InputContainer, stream: VideoStream) -> Iterator[VideoFrame]:
    """Every frame that can be decoded, in order; damaged packets are skipped, a broken
    container ends the stream where it breaks."""
    for packet in _packets(container, stream, strict=False):
        try:
            yield from packet.decode()
        except av.FFmpegError:
            continue


def _packets(container: InputContainer, stream: VideoStream, strict: bool) -> Iterator[av.Packet]:
    try:
        yield from container.demux(stream)
    except av.FFmpegError as err:
        if strict:
            raise IndexMismatch(f"demuxing failed: {err}") from None
