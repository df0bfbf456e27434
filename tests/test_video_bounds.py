"""Index rules (round, floor, segment) and time bounds of sample_frames: exact values, properties, decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures_video import encode, reference_frames
from hypothesis import given
from hypothesis import strategies as st

from fpcli.video import VideoError, sample_frames
from fpcli.video.indices import bounded_indices, segment_indices, uniform_indices

SAMPLE = Path(__file__).resolve().parent.parent / "sample_videos" / "hard_cuts.mp4"  # 250 frames, 25 fps


def test_exact_values() -> None:
    assert uniform_indices(10, 3, "floor").tolist() == [0, 4, 9]  # the reference's truncation
    assert uniform_indices(10, 3, "round").tolist() == [0, 5, 9]
    assert uniform_indices(3, 5, "floor").tolist() == [0, 0, 1, 1, 2]  # repeats, like np.linspace(..., dtype=int)
    assert uniform_indices(3, 5, "round").tolist() == [0, 1, 2]
    # MVBench get_index: 250 frames, whole video: segments of 62.5 frames, middles truncated
    assert segment_indices(4, 25.0, 249).tolist() == [31, 93, 156, 218]
    # bound 2.0-6.5 s at 25 fps: frames 50..round(162.5) = 162 (halves to even), segments of 28.25
    assert segment_indices(4, 25.0, 249, 2.0, 6.5).tolist() == [64, 92, 120, 148]
    assert segment_indices(4, 25.0, 249, 20.0, 30.0).tolist() == [249, 249, 249, 249]  # past the end: clipped
    seconds = np.arange(250) / 25.0
    assert bounded_indices(seconds, 3, "floor", 2.0, 6.0, 25.0).tolist() == [50, 100, 150]
    assert bounded_indices(seconds, 3, "round", None, 1.0, 25.0).tolist() == [0, 13, 25]  # 12.5 rounds up
    assert bounded_indices(seconds, 2, "floor", 2.01, 2.02, 25.0).tolist() == [50, 50]  # between frames: on screen


@given(st.integers(1, 5000), st.integers(1, 300))
def test_floor_is_the_reference_linspace(total: int, num_frames: int) -> None:
    expected = np.linspace(0, total - 1, num_frames, dtype=int)
    assert uniform_indices(total, num_frames, "floor").tolist() == expected.tolist()


@given(st.integers(1, 5000), st.integers(1, 300))
def test_round_is_within_half_a_frame(total: int, num_frames: int) -> None:
    idx = uniform_indices(total, num_frames, "round")
    if num_frames >= total:
        assert idx.tolist() == list(range(total))
    else:
        assert np.all(np.abs(idx - np.linspace(0, total - 1, num_frames)) <= 0.5)


@given(st.integers(1, 128), st.floats(1.0, 60.0), st.integers(0, 3000),
       st.one_of(st.none(), st.tuples(st.floats(0, 200), st.floats(0, 200)).map(sorted)))
def test_segment_indices_stay_in_bound(num_frames: int, fps: float, last: int, bound) -> None:
    start, end = (None, None) if bound is None else bound
    idx = segment_indices(num_frames, fps, last, start, end)
    assert idx.shape == (num_frames,) and np.all(np.diff(idx) >= 0)
    assert idx.min() >= 0 and idx.max() <= last
    if bound is not None and round(end * fps) > round(start * fps) and round(end * fps) <= last:
        assert idx.min() >= round(start * fps) and idx.max() <= round(end * fps)


@given(st.integers(2, 400), st.integers(1, 64), st.sampled_from(["round", "floor"]),
       st.tuples(st.floats(0, 20), st.floats(0, 20)).map(sorted))
def test_bounded_indices_inside_the_bound(total: int, num_frames: int, rule: str, bound) -> None:
    seconds = np.arange(total) / 25.0
    start, end = bound
    idx = bounded_indices(seconds, num_frames, rule, start, end, 25.0)
    assert np.all(np.diff(idx) >= 0) and idx.min() >= 0 and idx.max() < total
    inside = (seconds >= start - 1e-9) & (seconds <= end + 1e-9)
    if inside.any():
        assert inside[idx].all()
        assert len(idx) == (num_frames if rule == "floor" else min(num_frames, int(inside.sum())))


def test_sample_frames_segment_in_bound_decodes_those_frames() -> None:
    clip = sample_frames(SAMPLE, 4, index_rule="segment", start=2.0, end=6.5)
    assert clip.indices.tolist() == [64, 92, 120, 148]
    assert clip.timestamps.tolist() == [2.56, 3.68, 4.8, 5.92]
    reference = reference_frames(SAMPLE)
    for frame, index in zip(clip.frames, clip.indices):
        np.testing.assert_array_equal(frame, reference[index])
    assert sample_frames(SAMPLE, 3, index_rule="floor", start=2.0, end=6.0).indices.tolist() == [50, 100, 150]


def test_floor_repeats_frames_of_a_short_video(tmp_path: Path) -> None:
    path = encode(tmp_path / "three.mp4", "libx264", 32, 16, 3)
    clip = sample_frames(path, 8, index_rule="floor")
    assert clip.indices.tolist() == [0, 0, 0, 0, 1, 1, 1, 2] and clip.frames.shape[0] == 8
    reference = reference_frames(path)
    for frame, index in zip(clip.frames, clip.indices):
        np.testing.assert_array_equal(frame, reference[index])
    assert sample_frames(path, 8).indices.tolist() == [0, 1, 2]  # the default keeps one of each


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"index_rule": "nearest"}, "index_rule must be one of round, floor, segment, got 'nearest'"),
    ({"start": -1.0}, "start must be a number of seconds >= 0, got -1.0"),
    ({"end": float("nan")}, "end must be a number of seconds >= 0, got nan"),
    ({"start": 3.0, "end": 2.0}, "end (2.0) must not be before start (3.0)"),
    ({"fps": 1.0, "start": 1.0}, "start/end restrict uniform sampling; they cannot be combined with fps"),
])
def test_bad_sampling_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(VideoError) as err:
        sample_frames(SAMPLE, 4, **kwargs)
    assert str(err.value) == f"{message} ({SAMPLE})"
