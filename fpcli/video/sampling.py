"""sample_frames: the frames a video LLM sees, taken from any video file."""

from __future__ import annotations

import os
from collections.abc import Callable

import av
import numpy as np
from av import VideoFrame
from av.container import InputContainer
from av.video.stream import VideoStream

from fpcli.video.clip import VideoClip
from fpcli.video.decode import IndexMismatch, decode_by_seeking, decode_sequentially, prepare
from fpcli.video.errors import VideoError
from fpcli.video.indices import INDEX_RULES, bounded_indices, capped_rule, rate_picks, uniform_indices
from fpcli.video.notes import rate_above_native, stated_seconds, too_few_frames
from fpcli.video.picture import frame_to_rgb
from fpcli.video.probe import FrameIndex, ffmpeg_reason, index_frames, open_video

Progress = Callable[[str, int, int], None]
DEFAULT_INDEX_RULE = "round"  # what a caller that names no rule gets (the CLI's sampling, fpcli.model.sampling)


def sample_frames(
    path: str | os.PathLike,
    num_frames: int = 64,
    *,
    fps: float | None = None,
    max_frames: int = 1024,
    progress: Progress | None = None,
    index_rule: str = DEFAULT_INDEX_RULE,
    start: float | None = None,
    end: float | None = None,
) -> VideoClip:
    """Sample frames from the video at `path`.

    Uniform mode (default): `num_frames` frames evenly spaced from the first to the last frame.
    `index_rule` says how: "round" (nearest index; all frames when the video has fewer), "floor"
    (the reference code's truncated np.linspace, exactly num_frames indices, repeats included) or
    "segment" (MVBench: the middle frame of each of num_frames equal segments). `start`/`end`
    (seconds, either may be None) restrict sampling to that time bound: "round"/"floor" spread
    over the frames shown inside it, "segment" converts it to frame numbers with the stream's
    average rate as MVBench does. Rate mode (`fps` given, `num_frames` ignored, no bound): the
    frame on screen every 1/fps seconds, at most `max_frames` (more fall back to `max_frames`
    uniform ones by `index_rule`, and say so in `clip.warnings`, as does a file whose readable part
    is shorter than its header states). `progress("decode", done, total)` is called as frames are taken.
    Raises VideoError, with a one-line message naming the file, for anything that is not a
    readable video with at least one decodable frame.
    """
    _check_arguments(path, num_frames, fps, max_frames)
    _check_sampling(path, fps, index_rule, start, end)
    rule = _Rule(num_frames, fps, max_frames, index_rule, start, end)
    try:
        return _sample(path, rule, progress)
    except av.FFmpegError as err:  # decode errors are handled inside; this is for anything left
        raise VideoError(f"cannot be decoded ({ffmpeg_reason(err)})", path) from None


class _Rule:
    """Which frame indices to take, once the frame times are known."""

    def __init__(
        self,
        num_frames: int,
        fps: float | None,
        max_frames: int,
        index_rule: str,
        start: float | None,
        end: float | None,
    ) -> None:
        self.num_frames, self.fps, self.max_frames = num_frames, fps, max_frames
        self.index_rule, self.start, self.end = index_rule, start, end

    def choose(self, seconds: np.ndarray, duration: float, fps_avg: float) -> tuple[np.ndarray, list[str]]:
        """int64 indices in sampling order (ascending; repeats possible with "floor"/"segment"), and a
        warning when rate sampling had to be capped."""
        if self.fps is None:
            chosen = bounded_indices(seconds, self.num_frames, self.index_rule, self.start, self.end, fps_avg or 25.0)
            return chosen, too_few_frames(chosen, self.num_frames)
        picked = rate_picks(seconds, duration, self.fps)
        if picked.shape[0] <= self.max_frames:
            return picked, rate_above_native(self.fps, fps_avg, picked.shape[0])
        capped = f"sampling at {self.fps:g} fps gives {picked.shape[0]} frames, more than the cap of " \
                 f"{self.max_frames}: took {self.max_frames} frames evenly spread over the video instead"
        return uniform_indices(len(seconds), self.max_frames, capped_rule(self.index_rule)), [capped]


def _sample(path: str | os.PathLike, rule: _Rule, progress: Progress | None) -> VideoClip:
    """Index the packets and decode by seeking; count frames by decoding where the index is wrong."""
    container, stream = open_video(path)
    with container:
        index = index_frames(container, stream)
        if index.total == 0:
            raise VideoError("has no video frames", path)
        fps_avg = float(stream.average_rate or 0)
        header = _header_seconds(container, stream)
        if index.seekable:
            seconds = index.seconds()  # [F]
            duration = float(seconds[-1]) + _last_frame_seconds(index)
            chosen, warnings = rule.choose(seconds, duration, fps_avg)
            wanted = np.unique(chosen)  # each frame is decoded once, repeated afterwards
            taken = _Taken(wanted, progress)
            prepare(stream, frame_threads=True)
            # The last frame is always decoded too: a file cut short has packets that never become
            # frames, and reaching the last one proves the frame count (and so the indices) right.
            plan = np.union1d(wanted, [index.total - 1])
            try:
                decode_by_seeking(container, stream, index, plan, taken.keep)
                warnings += _cut_short(header, duration, fps_avg)
                return _clip(path, taken, chosen, seconds, duration, fps_avg, warnings)
            except IndexMismatch:
                pass  # the index was wrong about this file: count frames the slow, sure way
    return _sample_by_counting(path, rule, progress, header)


def _sample_by_counting(
    path: str | os.PathLike, rule: _Rule, progress: Progress | None, header: float | None
) -> VideoClip:
    """Two forward decodes: one counts the frames that decode, one takes the wanted ones."""
    container, stream = open_video(path)
    with container:
        prepare(stream, frame_threads=False)
        times = [frame.time for frame in decode_sequentially(container, stream)]
        fps_avg = float(stream.average_rate or 0)
    if not times:
        raise VideoError("no frame could be decoded (file truncated or corrupt)", path)
    seconds = _seconds_of(times, fps_avg)
    step = float(np.median(np.diff(seconds))) if len(seconds) > 1 else (1 / fps_avg if fps_avg else 0.0)
    duration = float(seconds[-1]) + step
    chosen, warnings = rule.choose(seconds, duration, fps_avg)
    wanted = np.unique(chosen)
    taken = _Taken(wanted, progress)
    container, stream = open_video(path)
    with container:
        prepare(stream, frame_threads=False)
        last = int(wanted[-1])
        for i, frame in enumerate(decode_sequentially(container, stream)):
            taken.keep(i, frame)
            if i >= last:
                break
    if taken.count != len(wanted):  # the second decode gave fewer frames than the first
        raise VideoError("decoding is not repeatable (file corrupt)", path)
    return _clip(path, taken, chosen, seconds, duration, fps_avg, warnings + _cut_short(header, duration, fps_avg))


class _Taken:
    """Collects the wanted frames as RGB, converting only those, and reports progress.

    The clip's array is allocated once, at the first frame, and filled in place: 512 frames of
    720p are 1.4 GB, and stacking them from a list at the end would double that.
    """

    def __init__(self, wanted: np.ndarray, progress: Progress | None) -> None:
        self.wanted = wanted
        self.wanted_set = set(wanted.tolist())
        self.frames: np.ndarray | None = None  # [T, H, W, 3]
        self.count = 0
        self.size: tuple[int, int] | None = None
        self.rotation = 0
        self.progress = progress
        if progress is not None:
            progress("decode", 0, len(wanted))

    def keep(self, i: int, frame: VideoFrame) -> None:
        if i not in self.wanted_set:
            return
        if self.frames is None:
            self.size, self.rotation = (frame.width, frame.height), frame.rotation
            rgb = frame_to_rgb(frame)
            self.frames = np.empty((len(self.wanted), *rgb.shape), dtype=np.uint8)
        else:
            rgb = frame_to_rgb(frame, self.size, self.rotation)
        self.frames[self.count] = rgb
        self.count += 1
        if self.progress is not None:
            self.progress("decode", self.count, len(self.wanted))


def _header_seconds(container: InputContainer, stream: VideoStream) -> float | None:
    """The duration the file's header promises (stream, else container, or its frame count: notes.stated_seconds),
    None when it states none."""
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    else:
        seconds = container.duration / av.time_base if container.duration else None
    return stated_seconds(seconds, int(stream.frames or 0), float(stream.average_rate or 0))


def _cut_short(header: float | None, duration: float, fps_avg: float) -> list[str]:
    """A warning when the readable part is shorter than the header says by more than two frames (and 1%):
    a file cut short (an interrupted download or copy) that still samples, but only its beginning."""
    if header is None or header <= 0:
        return []
    slack = max(2 / fps_avg if fps_avg else 0.0, 0.01 * header)
    if duration >= header - slack:
        return []
    return [f"only {duration:.2f} s of the {header:.2f} s the file's header states can be read (file cut short?); "
            "sampled from the readable part"]


def _clip(
    path: str | os.PathLike,
    taken: _Taken,
    chosen: np.ndarray,
    seconds: np.ndarray,
    duration: float,
    fps_avg: float,
    warnings: list[str],
) -> VideoClip:
    total = len(seconds)
    if not fps_avg:
        fps_avg = total / duration if duration > 0 else 0.0
    frames = taken.frames
    if len(chosen) != len(taken.wanted):  # repeated indices: the decoded frames, in sampling order
        frames = frames[np.searchsorted(taken.wanted, chosen)]  # [T, H, W, 3]
    return VideoClip(
        path=str(path),
        frames=frames,
        indices=chosen.astype(np.int64),
        timestamps=seconds[chosen].astype(np.float64),
        fps=fps_avg,
        duration=duration,
        total_frames=total,
        warnings=warnings,
    )


def _last_frame_seconds(index: FrameIndex) -> float:
    """How long the last frame is shown: its packet's duration, else the typical frame step."""
    if index.last_duration > 0:
        return index.last_duration * float(index.time_base)
    if index.total > 1:
        return float(np.median(np.diff(index.pts))) * float(index.time_base)
    return 0.0


def _seconds_of(times: list[float | None], fps_avg: float) -> np.ndarray:
    """float64 [F] frame times since the first frame; frame count / rate where timestamps are missing
    or out of order."""
    arr = np.array([np.nan if t is None else t for t in times], dtype=np.float64)
    if np.isnan(arr).any() or np.any(np.diff(arr) <= 0):
        rate = fps_avg or 25.0
        return np.arange(len(times), dtype=np.float64) / rate
    return arr - arr[0]


def _check_sampling(
    path: str | os.PathLike, fps: float | None, index_rule: str, start: float | None, end: float | None
) -> None:
    if index_rule not in INDEX_RULES:
        raise VideoError(f"index_rule must be one of {', '.join(INDEX_RULES)}, got {index_rule!r}", path)
    for name, value in (("start", start), ("end", end)):
        number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
        if value is not None and not (number and np.isfinite(value) and value >= 0):
            raise VideoError(f"{name} must be a number of seconds >= 0, got {value!r}", path)
    if start is not None and end is not None and end < start:
        raise VideoError(f"end ({end}) must not be before start ({start})", path)
    if fps is not None and (start is not None or end is not None):
        raise VideoError("start/end restrict uniform sampling; they cannot be combined with fps", path)


def _check_arguments(path: str | os.PathLike, num_frames: int, fps: float | None, max_frames: int) -> None:
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise VideoError(f"num_frames must be an integer >= 1, got {num_frames!r}", path)
    if isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer)) or max_frames < 1:
        raise VideoError(f"max_frames must be an integer >= 1, got {max_frames!r}", path)
    if fps is not None and not (isinstance(fps, (int, float, np.number)) and np.isfinite(fps) and fps > 0):
        raise VideoError(f"fps must be a number > 0, got {fps!r}", path)
