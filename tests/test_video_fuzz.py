"""Fuzzing the loader: damaged files give a valid clip or a VideoError, nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from fpcli.video import VideoClip, VideoError, sample_frames

SOURCES = ["h264_bframes.mp4", "h264_open_gop.mkv", "vp9.webm", "mpeg4.avi", "mpegts.ts"]


@st.composite
def damaged(draw: st.DrawFn) -> tuple[str, list[tuple[str, int, bytes]]]:
    """A source clip and a few edits: truncate, flip bytes, insert or overwrite garbage."""
    source = draw(st.sampled_from(SOURCES))
    edits = draw(st.lists(
        st.tuples(st.sampled_from(["truncate", "flip", "insert", "overwrite"]),
                  st.floats(0.0, 1.0), st.binary(min_size=1, max_size=64)),
        min_size=1, max_size=4,
    ))
    return source, edits


def apply(data: bytes, edits: list[tuple[str, float, bytes]]) -> bytes:
    buf = bytearray(data)
    for kind, where, junk in edits:
        at = int(where * len(buf))
        if kind == "truncate":
            del buf[at:]
        elif kind == "flip":
            for k, b in enumerate(junk[:8]):
                if at + k < len(buf):
                    buf[at + k] ^= b or 0xFF
        elif kind == "insert":
            buf[at:at] = junk
        else:
            buf[at:at + len(junk)] = junk
    return bytes(buf)


@given(case=damaged(), num_frames=st.integers(1, 12), rate=st.sampled_from([None, 3.0]))
def test_damaged_files_give_clip_or_video_error(
    video_dir: Path, tmp_path_factory, case: tuple[str, list], num_frames: int, rate: float | None
) -> None:
    source, edits = case
    path = tmp_path_factory.mktemp("fuzz") / source
    path.write_bytes(apply((video_dir / source).read_bytes(), edits))
    try:
        clip = sample_frames(path, num_frames, fps=rate)
    except VideoError as err:
        assert "\n" not in str(err) and str(path) in str(err)
        return
    assert isinstance(clip, VideoClip)
    t = len(clip.frames)
    assert t >= 1 and clip.frames.dtype == np.uint8 and clip.frames.ndim == 4 and clip.frames.shape[3] == 3
    assert clip.indices.shape == clip.timestamps.shape == (t,)
    assert np.all(np.diff(clip.indices) > 0) and 0 <= clip.indices[0] and clip.indices[-1] < clip.total_frames
    assert rate is not None or t == min(num_frames, clip.total_frames)
    assert np.all(np.isfinite(clip.timestamps)) and clip.duration >= 0
