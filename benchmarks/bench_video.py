"""Frame sampling speed: fpcli.video.sample_frames vs the sequential PyAV recipe.

    python benchmarks/bench_video.py [--cache DIR] [--repeat N]

Two cases, both 720p H.264 at 25 fps with a keyframe every 10 s:
  sparse: 64 frames from a one-hour video (far fewer wanted frames than keyframes)
  dense:  512 frames from a six-minute video (wanted frames much denser than keyframes)
The baseline is the recipe of the PyAV docs and popular evaluation harnesses: decode from the
start, keep frame i if it is wanted, stop after the last one. Both must return identical frames.
The test videos are a 10 s clip encoded once, its packets repeated with shifted timestamps (no
re-encoding), cached in DIR (default: <tmp>/forestprune-bench, about 55 MB).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from fpcli.video import sample_frames
from fpcli.video.indices import uniform_indices

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fixtures_video import repeat_packets  # noqa: E402  (the tests' long videos are made the same way)

WIDTH, HEIGHT, RATE, CLIP_SECONDS, GOP = 1280, 720, 25, 10, 250


def encode_clip(path: Path) -> None:
    """10 s of a slowly panning smooth texture with a moving square (lecture/vlog-like bitrate)."""
    rng = np.random.default_rng(0)
    coarse = rng.random((HEIGHT // 60 + 2, WIDTH // 30 + 2, 3))  # [h, w, 3]
    ys = np.linspace(0, coarse.shape[0] - 1.001, HEIGHT)
    xs = np.linspace(0, coarse.shape[1] - 1.001, 2 * WIDTH)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
    bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
    texture = ((top * (1 - fy) + bottom * fy) * 255).astype(np.uint8)  # [H, 2W, 3] bilinear noise
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "28", "g": str(GOP), "keyint_min": str(GOP), "sc_threshold": "0"}
        for i in range(CLIP_SECONDS * RATE):
            img = texture[:, 2 * i: 2 * i + WIDTH].copy()
            x, y = (9 * i) % (WIDTH - 120), 300 + int(80 * np.sin(i / 10))
            img[y:y + 120, x:x + 120] = (240, 40, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def sequential(path: Path, indices: np.ndarray) -> np.ndarray:
    """The common recipe: decode everything up to the last wanted frame, convert the wanted ones."""
    wanted, last, frames = set(indices.tolist()), int(indices[-1]), []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                frames.append(frame.to_ndarray(format="rgb24"))
            if i >= last:
                break
    return np.stack(frames)


def timed(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "forestprune-bench")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (best is kept)")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    clip = args.cache / "clip720p.mp4"
    if not clip.exists():
        encode_clip(clip)
    cases = [("1 h 720p, 64 frames", "hour720p.mp4", 360, 64), ("6 min 720p, 512 frames", "sixmin720p.mp4", 36, 512)]
    print(f"{'case':<24} {'sequential s':>12} {'sample_frames s':>15} {'speedup':>8}")
    for name, file, copies, frames in cases:
        path = args.cache / file
        if not path.exists():
            repeat_packets(clip, path, copies)
        with av.open(str(path)) as container:
            total = container.streams.video[0].frames
        indices = uniform_indices(total, frames)
        ours_s, clip_ = timed(lambda: sample_frames(path, frames), args.repeat)
        base_s, base = timed(lambda: sequential(path, indices), args.repeat)
        assert np.array_equal(clip_.indices, indices) and np.array_equal(clip_.frames, base), "frames differ"
        print(f"{name:<24} {base_s:>12.2f} {ours_s:>15.2f} {base_s / ours_s:>7.1f}x")


if __name__ == "__main__":
    main()
