"""Writing a picture file: FILE.html is the report page (fpcli.viz.report); any other of fpcli.viz.SUFFIXES is one
image, the figures stacked under a title line."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

from fpcli.viz import REPORT_SUFFIX
from fpcli.viz.cells import BACKGROUND, CANVAS_WIDTH, LINE_HEIGHT, TEXT_COLOUR, font
from fpcli.viz.report import Figure, Table, page

GAP = 8  # pixels between stacked figures


def stack(title: str, images: Sequence[Image.Image]) -> Image.Image:
    """The images one under another, CANVAS_WIDTH wide, under a line of title."""
    height = LINE_HEIGHT + 4 + sum(image.height + GAP for image in images)
    canvas = Image.new("RGB", (CANVAS_WIDTH, height), BACKGROUND)
    ImageDraw.Draw(canvas).text((4, 3), title, fill=TEXT_COLOUR, font=font())
    top = LINE_HEIGHT + 4
    for image in images:
        canvas.paste(image, (0, top))
        top += image.height + GAP
    return canvas


def write(path: Path, title: str, figures: Sequence[Figure], table: Table | None = None,
          notes: Sequence[str] = ()) -> Path:
    """Write `figures` to `path` by its suffix: the HTML report (with `table` and `notes`), or one stacked image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == REPORT_SUFFIX:
        path.write_text(page(title, figures, table, notes), encoding="utf-8")
    else:
        stack(title, [figure.image for figure in figures]).save(path)
    return path
