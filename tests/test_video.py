"""sample_frames: exact frames, metadata, rotation, variable rate, fast path on long videos."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from fixtures_video import READABLE, VFR_MS, reference_frames

from fpcli.video import VideoClip, sample_frames
from fpcli.video import decode as decode_module
from fpcli.video import sampling
from fpcli.video.indices import uniform_indices

# Clips whose packet index is right, so the seeking path must handle them without falling back.
INDEXABLE = [name for name in READABLE if name not in ("truncated.mp4", "mpeg2.mpg")]


def assert_exact(clip: VideoClip, reference: list[np.ndarray]) -> None:
    assert clip.total_frames == len(reference)
    assert clip.frames.dtype == np.uint8 and clip.frames.ndim == 4 and clip.frames.shape[3] == 3
    assert clip.indices.dtype == np.int64 and clip.timestamps.dtype == np.float64
    assert len(clip.indices) == len(clip.timestamps) == len(clip.frames)
    for i, frame in zip(clip.indices.tolist(), clip.frames):
        assert np.array_equal(frame, reference[i]), f"frame {i} differs from the sequential decode"


@pytest.fixture
def no_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if sample_frames leaves the seeking path (the index must match these files)."""

    def fail(*args, **kwargs):
        raise AssertionError("fell back to counting frames")

    monkeypatch.setattr(sampling, "_sample_by_counting", fail)


@pytest.mark.parametrize("name", READABLE)
def test_frames_equal_sequential_decode(video_dir: Path, name: str) -> None:
    path = video_dir / name
    reference = reference_frames(path)
    for num_frames in (1, 2, 7, len(reference), len(reference) + 5):
        clip = sample_frames(path, num_frames)
        assert np.array_equal(clip.indices, uniform_indices(len(reference), num_frames))
        assert_exact(clip, reference)
    assert len(clip) == len(reference)  # asking for more than there is gives every frame


@pytest.mark.parametrize("name", INDEXABLE)
def test_seeking_path_handles_clean_files(video_dir: Path, name: str, no_fallback: None) -> None:
    clip = sample_frames(video_dir / name, 5)
    reference = reference_frames(video_dir / name)
    assert clip.indices.tolist() == uniform_indices(len(reference), 5).tolist()
    assert_exact(clip, reference)


def test_truncated_mp4_keeps_what_decodes(video_dir: Path) -> None:
    # The index (written up front) promises 80 frames; only the decodable ones count.
    path = video_dir / "truncated.mp4"
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 80
    clip = sample_frames(path, 16)
    assert 0 < clip.total_frames < 80
    assert clip.indices[-1] == clip.total_frames - 1
    assert_exact(clip, reference_frames(path))


@pytest.mark.parametrize("name", ["h264_open_gop.mkv", "vp9.webm", "odd_size.mkv", "truncated.mkv"])
def test_total_frames_without_container_count(video_dir: Path, name: str) -> None:
    path = video_dir / name
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # matroska stores no frame count
    assert sample_frames(path, 3).total_frames == len(reference_frames(path))


def test_metadata_of_constant_rate_clip(video_dir: Path) -> None:
    clip = sample_frames(video_dir / "h264_bframes.mp4", 5)
    assert clip.path == str(video_dir / "h264_bframes.mp4")
    assert (clip.width, clip.height, clip.total_frames) == (64, 48, 120)
    assert clip.fps == 25.0
    assert clip.duration == pytest.approx(120 / 25)
    assert clip.indices.tolist() == [0, 30, 60, 89, 119]
    np.testing.assert_allclose(clip.timestamps, clip.indices / 25, atol=1e-9)


def test_timestamps_are_the_nearest_floats_of_exact_times() -> None:
    """Times reach JSON output: 83/25 s must be 3.32, not 3.3200000000000003."""
    clip = sample_frames(SAMPLE_VIDEOS / "hard_cuts.mp4", 4)
    assert clip.indices.tolist() == [0, 83, 166, 249]
    assert clip.timestamps.tolist() == [0.0, 3.32, 6.64, 9.96]


def test_rotation_is_applied(video_dir: Path) -> None:
    clip = sample_frames(video_dir / "rotated.mp4", 4)
    assert (clip.width, clip.height) == (32, 48)  # stored 48x32, shown upright as portrait
    stored = av.open(str(video_dir / "rotated.mp4"))
    first = next(stored.decode(video=0)).to_ndarray(format="rgb24")  # [32, 48, 3]
    stored.close()
    # a quarter turn clockwise: the stored left column becomes the top row, read right to left
    assert np.array_equal(clip.frames[0], np.rot90(first, -1))
    assert np.array_equal(clip.frames[0][0, ::-1], first[:, 0])


def test_variable_frame_rate_timestamps(video_dir: Path) -> None:
    path = video_dir / "vfr.mp4"
    clip = sample_frames(path, len(VFR_MS))
    np.testing.assert_allclose(clip.timestamps, np.array(VFR_MS) / 1000, atol=1e-3)
    # at 2 fps: the frame on screen at 0, 0.5, 1.0, 1.5, 2.0 s
    at_rate = sample_frames(path, fps=2.0)
    assert at_rate.indices.tolist() == [0, 5, 8, 13, 14]
    assert_exact(at_rate, reference_frames(path))


def test_rate_mode_on_constant_rate_clip(video_dir: Path) -> None:
    clip = sample_frames(video_dir / "h264_bframes.mp4", fps=1.0)  # 4.8 s at 25 fps
    assert clip.indices.tolist() == [0, 25, 50, 75, 100]
    np.testing.assert_allclose(clip.timestamps, [0, 1, 2, 3, 4], atol=1e-9)
    capped = sample_frames(video_dir / "h264_bframes.mp4", fps=25.0, max_frames=4)
    assert capped.indices.tolist() == uniform_indices(120, 4).tolist()


def test_progress_reports_each_taken_frame(video_dir: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    sample_frames(video_dir / "h264_bframes.mp4", 6, progress=lambda *a: calls.append(a))
    assert calls == [("decode", k, 6) for k in range(7)]


def test_long_video_decodes_a_small_part(video_dir: Path, monkeypatch: pytest.MonkeyPatch, no_fallback: None) -> None:
    # 10 minutes, keyframe every 10 s: 16 wanted frames need their keyframe runs, not the whole video.
    path = video_dir / "long.mp4"
    decoded = []
    frames_from = decode_module._frames_from

    def counting(*args):
        for item in frames_from(*args):
            decoded.append(item[0])
            yield item

    monkeypatch.setattr(decode_module, "_frames_from", counting)
    clip = sample_frames(path, 16)
    assert clip.total_frames == 15000 and clip.duration == pytest.approx(600.0)
    assert len(decoded) < 15000 * 0.1
    # the long clip repeats a 250-frame unit: frame i equals frame i % 250 of the first copy
    first_copy = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            first_copy.append(frame.to_ndarray(format="rgb24"))
            if i == 249:
                break
    for i, frame in zip(clip.indices.tolist(), clip.frames):
        assert np.array_equal(frame, first_copy[i % 250])


def test_bikes_real_footage(bikes_path: Path) -> None:
    reference = reference_frames(bikes_path)
    clip = sample_frames(bikes_path, 64)
    assert (clip.width, clip.height, clip.total_frames, clip.fps) == (640, 272, 250, 25.0)
    assert_exact(clip, reference)
    # the hard cuts at frames 30, 76, 137, 187 and 242 are the largest frame-to-frame changes
    all_frames = np.stack(reference).astype(np.int16)  # [250, 272, 640, 3]
    change = np.abs(np.diff(all_frames, axis=0)).mean(axis=(1, 2, 3))  # [249], change into frame i+1
    assert sorted((np.argsort(change)[-5:] + 1).tolist()) == [30, 76, 137, 187, 242]


SAMPLE_VIDEOS = Path(__file__).resolve().parent.parent / "sample_videos"


def frame_changes(path: Path) -> np.ndarray:
    """float [249] mean absolute change into each frame of a 250-frame sample clip."""
    clip = sample_frames(path, 250)
    assert clip.frames.shape == (250, 240, 320, 3) and clip.duration == pytest.approx(10.0)
    return np.abs(np.diff(clip.frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))


def test_sample_videos_are_small() -> None:
    videos = sorted(p.name for p in SAMPLE_VIDEOS.glob("*.mp4"))
    assert videos == ["hard_cuts.mp4", "moving_object.mp4", "scene_returns.mp4"]
    assert sum((SAMPLE_VIDEOS / v).stat().st_size for v in videos) < 2 * 1024 * 1024


def test_sample_video_structure() -> None:
    cuts = frame_changes(SAMPLE_VIDEOS / "hard_cuts.mp4")
    assert (np.flatnonzero(cuts > 5) + 1).tolist() == [50, 100, 150, 200]
    returns = sample_frames(SAMPLE_VIDEOS / "scene_returns.mp4", 250).frames.astype(np.int16)
    assert np.abs(returns[249] - returns[0]).mean() < 3  # the first scene is back (up to coding noise)
    assert np.abs(returns[100] - returns[0]).mean() > 20
    moving = frame_changes(SAMPLE_VIDEOS / "moving_object.mp4")
    assert np.all(moving > 0) and np.all(moving < 2)  # something moves in every frame, the rest stays
