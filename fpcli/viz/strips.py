"""Strips: what each pruning method keeps of the same frames, one strip per method (the paper's Figure 5b).

A strip is a header (method, kept/total, and the stage: "before the LLM", or "at layer K" for a method that prunes
inside the LLM, from the tokens its deepest layers run on), the clip's cells (fpcli.viz.cells) with each patch kept
drawn bright and each dropped one dimmed, and under each cell its time and kept count. A merging method's tokens
(VisionZip's contextual tokens; any method that fills `merged_into`) are outlined in the colour of the kept token
they merged into, that token outlined in the same colour. Under the cells, a bar per cell (every cell of the clip,
also those a long clip does not draw, whose bars are muted) gives the share of its tokens kept, on one scale for all
strips of a picture so that they compare by eye.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from fpcli.viz.cells import (
    BACKGROUND,
    CANVAS_WIDTH,
    LINE_HEIGHT,
    MUTED_TEXT,
    TEXT_COLOUR,
    ClipPicture,
    clock,
    font,
    patch_border,
    patch_map,
    sheet,
    shown_cells,
    thumbnail,
    token_colours,
)

DIM = 0.25  # brightness of dropped patches
BAR_HEIGHT = 48
BAR_COLOUR = (90, 200, 120)
MUTED_BAR = (50, 100, 65)  # bars of cells a long clip does not draw
AXIS_LABELS = 8  # time labels under the bars, at most
BEFORE_LLM = "before the LLM"


def stage(from_layer: int) -> str:
    """The stage of a method's kept tokens: before the LLM (layer 0), or at the layer from which they are all left."""
    return BEFORE_LLM if from_layer == 0 else f"at layer {from_layer}"


@dataclass(frozen=True)
class Strip:
    """One method's kept tokens on a clip's cells."""

    method: str
    keep: np.ndarray  # [K] flat kept indices cell*N + row*W + col
    stage: str = BEFORE_LLM
    merged_into: np.ndarray | None = None  # [cells*N] kept flat index each dropped token merged into; -1: none

    def kept_per_cell(self, clip: ClipPicture) -> np.ndarray:
        """Kept tokens of each cell: [cells]."""
        return np.bincount(np.asarray(self.keep) // clip.per_cell, minlength=clip.cells)


def outline_colour_index(strip: Strip, tokens: int) -> np.ndarray:
    """For each flat token, the token whose colour outlines it: the kept token it merged into, itself where others
    merged into it, else -1: [tokens]."""
    if strip.merged_into is None:
        return np.full(tokens, -1)
    merged = np.asarray(strip.merged_into)
    index = merged.copy()
    targets = np.unique(merged[merged >= 0])
    index[targets] = targets
    return index


def cell_image(frame: np.ndarray, kept: np.ndarray, outline: np.ndarray, patches: np.ndarray, border: np.ndarray,
               size: tuple[int, int]) -> np.ndarray:
    """A cell's thumbnail [th, tw, 3]: kept patches as they are, the others dimmed, outlines drawn.

    kept [N] bool and outline [N] (flat token whose colour outlines each patch, -1 none) are the cell's;
    patches [th, tw] and border [th, tw] from fpcli.viz.cells.patch_map / patch_border at `size` (w, h)."""
    thumb = thumbnail(frame, size)  # [th, tw, 3]
    out = np.where(kept[patches][..., None], thumb, (thumb * DIM).astype(np.uint8))
    lines = border & (outline[patches] >= 0)  # [th, tw]
    out[lines] = token_colours(outline[patches][lines])
    return out


def shared_peak(clip: ClipPicture, strips: Sequence[Strip]) -> float:
    """The largest share of a cell kept by any strip: the top of every strip's bars."""
    return max(float(strip.kept_per_cell(clip).max()) for strip in strips) / clip.per_cell


def draw_strip(clip: ClipPicture, strip: Strip, peak: float, shown: np.ndarray | None = None) -> Image.Image:
    """One strip, CANVAS_WIDTH wide; bars scaled so that a cell keeping `peak` of its tokens fills them."""
    shown = shown_cells(clip.cells) if shown is None else shown
    layout = sheet(len(shown), clip.aspect)
    size = (layout.thumb_w, layout.thumb_h)
    top = LINE_HEIGHT
    bars_top = top + layout.height(len(shown)) + LINE_HEIGHT
    canvas = Image.new("RGB", (CANVAS_WIDTH, bars_top + BAR_HEIGHT + LINE_HEIGHT + 4), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    per_cell = strip.kept_per_cell(clip)  # [cells]
    kept_total = int(per_cell.sum())
    share = 100 * kept_total / clip.tokens
    draw.text((4, 2), f"{strip.method} · {kept_total}/{clip.tokens} tokens kept ({share:.1f}%) · {strip.stage}",
              fill=TEXT_COLOUR, font=font())

    kept = np.zeros(clip.tokens, dtype=bool)
    kept[np.asarray(strip.keep)] = True
    kept = kept.reshape(clip.cells, clip.per_cell)  # [cells, N]
    outline = outline_colour_index(strip, clip.tokens).reshape(clip.cells, clip.per_cell)  # [cells, N]
    patches = patch_map(clip.grid, size)  # [th, tw]
    border = patch_border(patches)
    for slot, cell in enumerate(shown):
        x, y = layout.origin(slot, top)
        image = cell_image(clip.frames[clip.frame_of(cell)], kept[cell], outline[cell], patches, border, size)
        canvas.paste(Image.fromarray(image), (x, y))
        label = f"{clip.label(cell)}  {per_cell[cell]}/{clip.per_cell}"
        if font().getlength(label) + 4 > layout.thumb_w:
            label = clip.label(cell)
        draw.text((x + 2, y + layout.thumb_h + 2), label, fill=TEXT_COLOUR, font=font())

    unit = "group" if clip.group > 1 else "frame"
    draw.text((4, bars_top - LINE_HEIGHT + 2), f"tokens kept per {unit}: bar = share of its {clip.per_cell} tokens, "
              f"full height = {100 * peak:.0f}% in every strip", fill=MUTED_TEXT, font=font())
    draw_bars(draw, per_cell / clip.per_cell, peak, shown, bars_top)
    draw_axis(draw, clip, bars_top + BAR_HEIGHT + 2)
    return canvas


def bar_slots(cells: int) -> np.ndarray:
    """Left edge of each cell's bar and the right end: [cells + 1] pixels across CANVAS_WIDTH."""
    return np.round(np.arange(cells + 1) * CANVAS_WIDTH / cells).astype(int)


def draw_bars(draw: ImageDraw.ImageDraw, fractions: np.ndarray, peak: float, shown: np.ndarray, top: int) -> None:
    """A bar per cell, its height fraction / peak of BAR_HEIGHT; the cells not drawn above in MUTED_BAR."""
    edges = bar_slots(len(fractions))
    drawn = np.zeros(len(fractions), dtype=bool)
    drawn[shown] = True
    base = top + BAR_HEIGHT - 1
    gap = 1 if CANVAS_WIDTH / len(fractions) >= 3 else 0
    for cell, fraction in enumerate(fractions):
        height = round(float(fraction) / (peak or 1.0) * BAR_HEIGHT)
        if height:
            draw.rectangle((edges[cell], base - height + 1, max(edges[cell], edges[cell + 1] - 1 - gap), base),
                           fill=BAR_COLOUR if drawn[cell] else MUTED_BAR)


def draw_axis(draw: ImageDraw.ImageDraw, clip: ClipPicture, top: int) -> None:
    """mm:ss under the bars at up to AXIS_LABELS evenly spaced cells (each at its bar)."""
    edges = bar_slots(clip.cells)
    width = font().getlength("00:00")
    for cell in np.unique(np.linspace(0, clip.cells - 1, min(clip.cells, AXIS_LABELS)).round().astype(int)):
        left = min(edges[cell], CANVAS_WIDTH - width - 2)
        draw.text((left, top), clock(float(clip.timestamps[clip.frame_of(cell)])), fill=MUTED_TEXT, font=font())


def draw_strips(clip: ClipPicture, strips: Sequence[Strip]) -> list[Image.Image]:
    """A strip per method, in order, over the same cells, their bars on one scale."""
    peak = shared_peak(clip, strips)
    shown = shown_cells(clip.cells)
    return [draw_strip(clip, strip, peak, shown) for strip in strips]
