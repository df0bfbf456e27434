"""Generate the sample clips in sample_videos/ (deterministic; about 1 MB in total).

    python scripts/make_sample_videos.py [--out sample_videos]

Three 10 s, 320x240, 25 fps H.264 clips with known structure, drawn with PIL so every scene
has shapes, edges and texture for a vision encoder to look at:
  moving_object.mp4  a static street scene; one red ball rolls and bounces across it
  hard_cuts.mp4      five different scenes, hard cuts at frames 50, 100, 150, 200
  scene_returns.mp4  street (frames 0-74), beach (75-149), night city (150-199), street again (200-249)
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

WIDTH, HEIGHT, RATE, FRAMES = 320, 240, 25, 250
CUTS = [50, 100, 150, 200]


def street() -> Image.Image:
    img = Image.new("RGB", (WIDTH, HEIGHT))
    d = ImageDraw.Draw(img)
    for y in range(150):  # sky, lighter towards the horizon
        d.line([(0, y), (WIDTH, y)], fill=(90 + y // 2, 150 + y // 3, 235))
    d.ellipse([250, 18, 290, 58], fill=(255, 220, 80))
    for k, (x, w, h, colour) in enumerate([(10, 70, 90, (180, 90, 70)), (95, 60, 110, (200, 180, 140)),
                                           (170, 80, 80, (120, 140, 170)), (265, 50, 100, (170, 120, 160))]):
        d.rectangle([x, 150 - h, x + w, 150], fill=colour, outline=(40, 40, 40))
        d.polygon([(x - 5, 150 - h), (x + w // 2, 150 - h - 25), (x + w + 5, 150 - h)], fill=(110, 40, 30))
        for wx in range(x + 8, x + w - 10, 16):  # windows
            for wy in range(150 - h + 10, 140, 20):
                d.rectangle([wx, wy, wx + 8, wy + 10], fill=(230, 240, 255) if (wx + wy + k) % 3 else (60, 70, 90))
    d.rectangle([0, 150, WIDTH, HEIGHT], fill=(80, 80, 85))  # road
    for x in range(0, WIDTH, 40):
        d.rectangle([x, 192, x + 22, 197], fill=(240, 240, 240))
    for x in range(0, WIDTH, 8):  # kerb stones
        d.rectangle([x, 150, x + 7, 156], fill=(150, 150, 150) if x % 16 else (120, 120, 120))
    return img


def beach() -> Image.Image:
    img = Image.new("RGB", (WIDTH, HEIGHT))
    d = ImageDraw.Draw(img)
    for y in range(110):
        d.line([(0, y), (WIDTH, y)], fill=(250 - y, 170 + y // 2, 120 + y))
    d.ellipse([130, 70, 190, 130], fill=(255, 140, 60))
    for y in range(110, 170):  # sea with wave lines
        shade = 60 + (y - 110)
        d.line([(0, y), (WIDTH, y)], fill=(20, shade, 140 + (y - 110)))
    for y in range(115, 170, 9):
        d.line([(x, y + 3 * math.sin(x / 9 + y)) for x in range(0, WIDTH + 1, 4)], fill=(200, 230, 255), width=1)
    d.rectangle([0, 170, WIDTH, HEIGHT], fill=(230, 200, 140))  # sand with pebbles
    rng = np.random.default_rng(7)
    for x, y in rng.integers([0, 172], [WIDTH, HEIGHT], size=(120, 2)):
        d.ellipse([x, y, x + 3, y + 2], fill=(170, 140, 100))
    d.polygon([(40, 230), (70, 150), (100, 230)], fill=(240, 60, 60), outline=(90, 20, 20))  # parasol
    d.line([(70, 150), (70, 235)], fill=(60, 40, 30), width=3)
    return img


def night_city() -> Image.Image:
    img = Image.new("RGB", (WIDTH, HEIGHT), (10, 12, 40))
    d = ImageDraw.Draw(img)
    rng = np.random.default_rng(3)
    for x, y in rng.integers([0, 0], [WIDTH, 90], size=(60, 2)):
        d.point((int(x), int(y)), fill=(255, 255, 220))
    d.ellipse([30, 15, 60, 45], fill=(240, 240, 210))
    x = 0
    for k, w in enumerate([40, 30, 55, 35, 45, 50, 40, 25]):
        h = 80 + (k * 37) % 90
        d.rectangle([x, HEIGHT - h, x + w - 3, HEIGHT], fill=(30 + 8 * k, 30 + 5 * k, 60))
        for wx in range(x + 4, x + w - 8, 8):
            for wy in range(HEIGHT - h + 6, HEIGHT - 6, 10):
                if rng.random() < 0.55:
                    d.rectangle([wx, wy, wx + 4, wy + 5], fill=(255, 210, 90))
        x += w
    return img


def forest() -> Image.Image:
    img = Image.new("RGB", (WIDTH, HEIGHT), (170, 210, 240))
    d = ImageDraw.Draw(img)
    d.rectangle([0, 160, WIDTH, HEIGHT], fill=(70, 130, 50))
    for k in range(14):
        x = 10 + k * 23 + (k * 7) % 11
        top = 40 + (k * 29) % 60
        d.rectangle([x + 8, 150, x + 14, 190], fill=(90, 60, 30))
        for level in range(3):
            y = top + level * 30
            d.polygon([(x - 6, y + 40), (x + 11, y), (x + 28, y + 40)], fill=(20, 90 + 20 * level, 40))
    for x in range(0, WIDTH, 6):
        d.line([(x, 200), (x + 3, 192)], fill=(40, 160, 60))
    return img


def checker_room() -> Image.Image:
    img = Image.new("RGB", (WIDTH, HEIGHT), (220, 210, 190))
    d = ImageDraw.Draw(img)
    for i in range(0, WIDTH, 20):  # wallpaper stripes
        d.rectangle([i, 0, i + 9, 130], fill=(200, 185, 160))
    for r in range(6):  # floor tiles
        for c in range(16):
            if (r + c) % 2 == 0:
                d.rectangle([c * 20, 130 + r * 20, c * 20 + 19, 149 + r * 20], fill=(40, 40, 40))
    d.rectangle([40, 30, 120, 100], fill=(250, 250, 250), outline=(80, 50, 20), width=5)  # picture frame
    d.polygon([(50, 90), (80, 45), (110, 90)], fill=(60, 120, 200))
    d.rectangle([190, 70, 290, 150], fill=(120, 60, 40))  # table
    d.ellipse([220, 50, 260, 75], fill=(240, 230, 60), outline=(120, 100, 0))
    return img


def with_ball(scene: Image.Image, i: int) -> Image.Image:
    """The scene with a red ball at its position in frame i (left to right, bouncing)."""
    img = scene.copy()
    x = 20 + (WIDTH - 40) * i / (FRAMES - 1)
    y = 200 - 110 * abs(math.sin(i * math.pi / 50))
    ImageDraw.Draw(img).ellipse([x - 14, y - 14, x + 14, y + 14], fill=(220, 30, 30), outline=(90, 0, 0), width=2)
    return img


def write(path: Path, frames: list[Image.Image]) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        # one encoder thread: x264 output is then the same bytes on every run
        stream.options = {"preset": "medium", "crf": "20", "g": "125", "threads": "1"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "sample_videos")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    base = street()
    write(args.out / "moving_object.mp4", [with_ball(base, i) for i in range(FRAMES)])

    scenes = [street(), beach(), night_city(), forest(), checker_room()]
    write(args.out / "hard_cuts.mp4", [scenes[sum(i >= c for c in CUTS)] for i in range(FRAMES)])

    order = [(0, base), (75, beach()), (150, night_city()), (200, base)]
    write(args.out / "scene_returns.mp4",
          [next(s for start, s in reversed(order) if i >= start) for i in range(FRAMES)])

    for path in sorted(args.out.glob("*.mp4")):
        print(f"{path} {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
