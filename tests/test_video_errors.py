"""Bad input gives a VideoError with one line naming the file and the problem, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from fpcli.video import VIDEO_EXTENSIONS, VideoError, list_videos, sample_frames


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("missing.mp4", "file not found"),
        (".", "is a directory, not a video file"),
        ("image.png", "is an image, not a video"),
        ("notes.mp4", "not a video file ffmpeg can read (invalid data found when processing input)"),
        ("audio_only.m4a", "has no video stream (audio only)"),
        ("zero_frames.mkv", "has no video frames"),
    ],
)
def test_unreadable_inputs(video_dir: Path, name: str, problem: str) -> None:
    path = video_dir / name
    with pytest.raises(VideoError) as info:
        sample_frames(path, 8)
    err = info.value
    assert (err.what, err.path) == (problem, str(path))
    assert str(err) == f"{problem} ({path})"
    assert "\n" not in str(err)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"num_frames": 0}, "num_frames must be an integer >= 1, got 0"),
        ({"num_frames": -3}, "num_frames must be an integer >= 1, got -3"),
        ({"num_frames": 2.5}, "num_frames must be an integer >= 1, got 2.5"),
        ({"fps": 0.0}, "fps must be a number > 0, got 0.0"),
        ({"fps": -1}, "fps must be a number > 0, got -1"),
        ({"fps": float("nan")}, "fps must be a number > 0, got nan"),
        ({"fps": 1.0, "max_frames": 0}, "max_frames must be an integer >= 1, got 0"),
    ],
)
def test_bad_arguments(video_dir: Path, kwargs: dict, problem: str) -> None:
    path = video_dir / "h264_bframes.mp4"
    with pytest.raises(VideoError) as info:
        sample_frames(path, **kwargs)
    assert str(info.value) == f"{problem} ({path})"


def test_nothing_decodable(tmp_path: Path, video_dir: Path) -> None:
    # The headers survive, everything after them (all frame data) is zeroed.
    data = bytearray((video_dir / "h264_open_gop.mkv").read_bytes())
    data[600:] = bytes(len(data) - 600)
    path = tmp_path / "zeroed.mkv"
    path.write_bytes(bytes(data))
    with pytest.raises(VideoError) as info:
        sample_frames(path, 4)
    assert info.value.what == "no frame could be decoded (file truncated or corrupt)"


def test_list_videos(tmp_path: Path) -> None:
    for name in ["b.MP4", "a.webm", "c.mkv", "notes.txt", "image.png", "._a.mp4"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.mp4").mkdir()
    assert [p.name for p in list_videos(tmp_path)] == ["a.webm", "b.MP4", "c.mkv"]
    assert {".mp4", ".mkv", ".webm", ".mov", ".avi"} <= VIDEO_EXTENSIONS


def test_list_videos_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match=r"^folder not found \(.*nowhere\)$"):
        list_videos(tmp_path / "nowhere")
    (tmp_path / "file.mp4").write_bytes(b"x")
    with pytest.raises(VideoError, match=r"^not a folder "):
        list_videos(tmp_path / "file.mp4")
