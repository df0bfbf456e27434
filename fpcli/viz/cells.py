"""A clip as pictures see it: its cells (one grid of tokens each), their thumbnails, and each token's patch on them.

A cell is what one grid of visual tokens covers: a sampled frame (LLaVA), or a temporal group of frames (Qwen-VL
merges each pair of frames into one grid of merged patches: the cell shows the group's first frame and is labelled
with its frames). Flat token indices are cell*N + row*W + col, as pruning reports them.

The model resizes each whole frame without cropping (LLaVA to a square, Qwen-VL to multiples of its merged patch,
keeping the aspect), so token (row, col) of the H x W grid covers the same fraction of the original frame: the grid
is simply stretched over the thumbnail, which has the aspect of the frames the tower saw when the model keeps it
(`frame_size`), else the video's.

Long clips stay readable: at most MAX_CELLS cells are drawn, spread evenly over the clip (the same ones in every
strip of a picture), at most MAX_COLUMNS to a row; the retention bars under a strip cover every cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFont

CANVAS_WIDTH = 1280  # width of every picture in pixels: strips of one picture line up
MAX_COLUMNS = 8  # cells per row of a strip
MAX_CELLS = 16  # cells drawn per strip (two rows); a longer clip shows MAX_CELLS of them, evenly spread
MIN_COLUMNS = 4  # a clip of fewer cells still gets thumbnails CANVAS_WIDTH / MIN_COLUMNS wide at most
THUMB_GAP = 4  # pixels between thumbnails: two frames of one scene must not read as one picture
FONT_SIZE = 13
LINE_HEIGHT = 18  # one line of text
BACKGROUND = (24, 24, 24)
TEXT_COLOUR = (230, 230, 230)
MUTED_TEXT = (150, 150, 150)


@lru_cache(maxsize=1)
def font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's own font at FONT_SIZE (no font file needed)."""
    return ImageFont.load_default(size=FONT_SIZE)


def clock(seconds: float) -> str:
    """mm:ss (minutes keep counting past an hour): what a label under a thumbnail has room for."""
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes:02d}:{rest:02d}"


@dataclass(frozen=True)
class ClipPicture:
    """The sampled frames of a clip and the token grid they were encoded to."""

    name: str  # the video's file name, for titles
    frames: np.ndarray  # uint8 [T, h, w, 3], the sampled frames
    timestamps: np.ndarray  # [T] seconds
    grid: tuple[int, int]  # (H, W) tokens of one cell
    group: int = 1  # frames per cell: 1, or Qwen-VL's temporal patch size (2)
    frame_size: tuple[int, int] | None = None  # (h, w) the tower saw where it keeps the aspect (Qwen-VL), else None

    @property
    def cells(self) -> int:
        """T cells, or T' = ceil(T / group) temporal groups."""
        return -(-len(self.frames) // self.group)

    @property
    def per_cell(self) -> int:
        """N = H*W tokens of a cell."""
        return self.grid[0] * self.grid[1]

    @property
    def tokens(self) -> int:
        return self.cells * self.per_cell

    @property
    def aspect(self) -> float:
        """Width / height of a thumbnail."""
        height, width = self.frame_size if self.frame_size is not None else self.frames.shape[1:3]
        return width / height

    def frame_of(self, cell: int) -> int:
        """The sampled frame a cell's thumbnail shows: its group's first."""
        return cell * self.group

    def label(self, cell: int) -> str:
        """A cell's time ('mm:ss'), and its frames where a cell holds several ('f3-4 mm:ss', 1-based)."""
        first = self.frame_of(cell)
        time = clock(float(self.timestamps[first]))
        if self.group == 1:
            return time
        last = min(first + self.group, len(self.frames))
        frames = f"f{first + 1}" if last == first + 1 else f"f{first + 1}-{last}"
        return f"{frames} {time}"


def shown_cells(cells: int, limit: int = MAX_CELLS) -> np.ndarray:
    """The cells a picture draws: all of them, or `limit` spread evenly from the first to the last: [S] ascending."""
    if cells <= limit:
        return np.arange(cells)
    return np.unique(np.linspace(0, cells - 1, limit).round().astype(int))


@dataclass(frozen=True)
class Sheet:
    """Where the thumbnails of a strip go: `columns` to a row, each thumb_w x thumb_h with a label line under it,
    one every `pitch` pixels."""

    columns: int
    pitch: int
    thumb_w: int
    thumb_h: int

    def origin(self, slot: int, top: int) -> tuple[int, int]:
        """Top-left corner of the `slot`-th thumbnail drawn, the first row's top at `top`."""
        return (slot % self.columns) * self.pitch, top + (slot // self.columns) * (self.thumb_h + LINE_HEIGHT)

    def height(self, count: int) -> int:
        """Pixels that `count` thumbnails and their labels take."""
        return math.ceil(count / self.columns) * (self.thumb_h + LINE_HEIGHT)


def sheet(count: int, aspect: float, columns: int = MAX_COLUMNS) -> Sheet:
    """The layout of `count` thumbnails of width/height `aspect` across CANVAS_WIDTH."""
    columns = max(1, min(count, columns))
    pitch = CANVAS_WIDTH // max(columns, MIN_COLUMNS)
    thumb_w = pitch - THUMB_GAP
    return Sheet(columns, pitch, thumb_w, max(1, round(thumb_w / aspect)))


def thumbnail(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A frame [h, w, 3] resized to size (w, h): [th, tw, 3] uint8."""
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))


def patch_map(grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """The token (row*W + col) each pixel of a thumbnail of size (w, h) shows: [th, tw]."""
    height, width = grid
    rows = np.arange(size[1]) * height // size[1]  # [th] grid row of each pixel row
    cols = np.arange(size[0]) * width // size[0]  # [tw]
    return rows[:, None] * width + cols[None, :]


def patch_border(patches: np.ndarray) -> np.ndarray:
    """The pixels on the edge of their patch (a neighbour shows another token, or the thumbnail ends): [th, tw]."""
    edge = np.zeros(patches.shape, dtype=bool)
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
    edge[1:, :] |= patches[1:, :] != patches[:-1, :]
    edge[:-1, :] |= patches[:-1, :] != patches[1:, :]
    edge[:, 1:] |= patches[:, 1:] != patches[:, :-1]
    edge[:, :-1] |= patches[:, :-1] != patches[:, 1:]
    return edge


def patch_centres(tokens: np.ndarray, grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Pixel (x, y) at the centre of each token's patch (tokens: row*W + col) on a thumbnail of size (w, h): [n, 2]."""
    height, width = grid
    rows, cols = np.divmod(np.asarray(tokens), width)
    x = ((cols + 0.5) * size[0] / width).astype(int)
    y = ((rows + 0.5) * size[1] / height).astype(int)
    return np.stack([x, y], axis=-1)


def token_colours(tokens: np.ndarray) -> np.ndarray:
    """A bright colour per flat token index, neighbours far apart on the hue circle (golden-ratio steps): [n, 3]."""
    hue = (np.asarray(tokens, dtype=np.float64) * 0.6180339887) % 1.0  # [n]
    sixth = hue[:, None] * 6 - np.array([3.0, 2.0, 4.0])  # [n, 3]: distance of the hue from red, green, blue
    rgb = np.clip(np.array([-1.0, 2.0, 2.0]) + np.array([1.0, -1.0, -1.0]) * np.abs(sixth), 0, 1)
    return (80 + 175 * rgb).astype(np.uint8)
