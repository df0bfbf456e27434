"""`stats --viz out.png`: the sampled frames with pruned patches dimmed, and the retention per frame.

The model resizes each whole frame without cropping (LLaVA to a square, Qwen-VL to multiples of its merged patch,
keeping the aspect), so token (row, col) of the H x W grid covers the same fraction of the original frame: the mask
is simply stretched over the thumbnail, which has the aspect of the frames the tower saw when the model keeps it
(`frame_size`), else the video's.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CANVAS_WIDTH = 1280  # target width of the picture in pixels
MIN_THUMB = 48
DIM = 0.25  # brightness of dropped patches
CHART_HEIGHT = 120
LABEL_HEIGHT = 14
BACKGROUND = (24, 24, 24)
BAR_COLOUR = (90, 200, 120)
TEXT_COLOUR = (230, 230, 230)
CHAR_WIDTH = 6  # PIL's default bitmap font
AXIS_LABELS = 8  # time labels under the chart, at most


def clock(seconds: float) -> str:
    """mm:ss (minutes keep counting past an hour): what a label under a thumbnail has room for."""
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes:02d}:{rest:02d}"


def thumb_label(seconds: float, kept: int, tokens: int, thumb_w: int) -> str:
    """'mm:ss kept/tokens' where it fits under a thumbnail, else 'mm:ss'."""
    full = f"{clock(seconds)} {kept}/{tokens}"
    return full if len(full) * CHAR_WIDTH + 4 <= thumb_w else clock(seconds)


def label_step(thumb_w: int) -> int:
    """Label every n-th thumbnail, so labels never overlap when thumbnails are narrower than 'mm:ss'."""
    return max(1, math.ceil((5 * CHAR_WIDTH + 6) / thumb_w))


def keep_masks(keep: np.ndarray, frames: int, grid: tuple[int, int]) -> np.ndarray:
    """Flat kept indices (frame*N + row*W + col) -> bool masks [T, H, W]."""
    height, width = grid
    mask = np.zeros(frames * height * width, dtype=bool)
    mask[keep] = True
    return mask.reshape(frames, height, width)


def _layout(frames: int, aspect: float) -> tuple[int, int, int]:
    """(columns, thumbnail width, thumbnail height) for a roughly CANVAS_WIDTH-wide sheet."""
    columns = min(frames, max(4, math.ceil(math.sqrt(frames * 16 / 9 / aspect))))
    thumb_w = max(MIN_THUMB, CANVAS_WIDTH // columns)
    return columns, thumb_w, max(1, round(thumb_w / aspect))


def _dimmed_thumb(frame: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a frame [h, w, 3] to size (w, h) and dim the pixels whose token was dropped."""
    thumb = np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))  # [th, tw, 3]
    rows = np.arange(size[1]) * mask.shape[0] // size[1]  # [th] grid row of each pixel row
    cols = np.arange(size[0]) * mask.shape[1] // size[0]  # [tw]
    kept = mask[rows[:, None], cols[None, :]]  # [th, tw]
    return np.where(kept[..., None], thumb, (thumb * DIM).astype(np.uint8))


def write_viz(
    path: Path,
    frames: np.ndarray,
    keep: np.ndarray,
    grid: tuple[int, int],
    timestamps: np.ndarray,
    title: str,
    frame_size: tuple[int, int] | None = None,
) -> Path:
    """Write the PNG. frames: uint8 [T, h, w, 3]; keep: flat kept token indices (frame*N + row*W + col);
    timestamps [T] seconds; frame_size: (h, w) of the resized frames the tower saw, or None."""
    count, frame_h, frame_w, _ = frames.shape
    if frame_size is not None:
        frame_h, frame_w = frame_size
    masks = keep_masks(keep, count, grid)  # [T, H, W]
    columns, thumb_w, thumb_h = _layout(count, frame_w / frame_h)
    rows = math.ceil(count / columns)
    cell_h = thumb_h + LABEL_HEIGHT
    sheet_w = columns * thumb_w
    canvas = Image.new("RGB", (sheet_w, LABEL_HEIGHT + rows * cell_h + CHART_HEIGHT + 2 * LABEL_HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 1), title, fill=TEXT_COLOUR)
    per_frame = masks.reshape(count, -1).sum(axis=1)  # [T]
    tokens = grid[0] * grid[1]
    step = label_step(thumb_w)
    for index in range(count):
        x = (index % columns) * thumb_w
        y = LABEL_HEIGHT + (index // columns) * cell_h
        canvas.paste(Image.fromarray(_dimmed_thumb(frames[index], masks[index], (thumb_w, thumb_h))), (x, y))
        if (index % columns) % step == 0:
            label = thumb_label(float(timestamps[index]), int(per_frame[index]), tokens, thumb_w * step)
            draw.text((x + 2, y + thumb_h + 1), label, fill=TEXT_COLOUR)
    _draw_chart(draw, per_frame / tokens, top=LABEL_HEIGHT + rows * cell_h, width=sheet_w)
    _draw_axis(draw, timestamps, top=LABEL_HEIGHT + rows * cell_h + LABEL_HEIGHT + CHART_HEIGHT, width=sheet_w)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def _draw_chart(draw: ImageDraw.ImageDraw, fractions: np.ndarray, top: int, width: int) -> None:
    """A bar per frame, height = fraction of its tokens kept, scaled so the fullest frame fills the chart
    (at 90% pruning every bar would otherwise be a sliver)."""
    peak = float(fractions.max())
    draw.text((4, top + 1), f"tokens kept per frame (tallest bar = {100 * peak:.0f}% of the frame)", fill=TEXT_COLOUR)
    base = top + LABEL_HEIGHT + CHART_HEIGHT - 2
    slot = width / len(fractions)
    for index, fraction in enumerate(fractions):
        left = round(index * slot)
        right = max(left, round((index + 1) * slot) - (1 if slot >= 3 else 0) - 1)
        height = round(float(fraction) / (peak or 1.0) * (CHART_HEIGHT - 4))
        if height:
            draw.rectangle((left, base - height + 1, right, base), fill=BAR_COLOUR)


def _draw_axis(draw: ImageDraw.ImageDraw, timestamps: np.ndarray, top: int, width: int) -> None:
    """mm:ss under the chart at up to AXIS_LABELS evenly spaced frames (each at its bar's position)."""
    count = len(timestamps)
    slot = width / count
    for index in np.unique(np.linspace(0, count - 1, min(count, AXIS_LABELS)).round().astype(int)):
        left = min(round(index * slot), width - 5 * CHAR_WIDTH - 2)
        draw.text((left, top + 1), clock(float(timestamps[index])), fill=TEXT_COLOUR)
