"""Accuracy vs pruning ratio, one line per method, drawn with Pillow (no matplotlib needed)."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from fpcli.eval.errors import EvalInputError
from fpcli.eval.scoring import REFERENCE
from fpcli.eval.table1 import Table1

_SIZE = (720, 440)
_MARGIN = (64, 36, 150, 48)  # left, top, right (legend), bottom
_COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def axis(low: float, high: float, ticks: int = 4, flat_span: float = 10.0) -> tuple[float, float, float]:
    """(start, end, step) of an axis over [low, high]: a round step (1, 2, 2.5 or 5 times a power of ten) giving about
    `ticks` intervals, the ends the multiples of it around the data: 52.3..58.1 -> 52, 60, 2. Data without a spread
    (one value) gets a step as for `flat_span` (percentage points), one step either side."""
    span = (high - low) or flat_span
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start, end = math.floor(low / step) * step, math.ceil(high / step) * step
    if start == end:
        start, end = start - step, end + step
    return start, end, step


def plot_title(table: Table1, bench: str | None = None, model: str | None = None) -> str:
    """'VideoMME accuracy % · llava-ov-0.5b'; several benchmarks averaged: 'VideoMME + MLVU (average) ...'."""
    benches = [bench] if bench else table.benches
    what = " + ".join(table.titles[b] for b in benches) + (" (average)" if len(benches) > 1 else "")
    return f"{what} accuracy %" + (f" · {model}" if model else "")


def plot_accuracy(table: Table1, path: str | Path, *, bench: str | None = None, model: str | None = None) -> Path:
    """Write a PNG of accuracy (a benchmark's column, or the row average) against ratio, one line per
    method; `none` is a dashed horizontal reference line. The title names the benchmark(s) and `model`; the y axis
    runs between round values around the data (`axis`). Returns the path written."""
    if bench is not None and bench not in table.benches:
        raise EvalInputError(f"no results for benchmark {bench!r} to plot")
    series: dict[str, list[tuple[float, float]]] = {}
    reference = None
    for row in table.rows:
        value = (row.cells[bench] if bench else row.average).accuracy
        if value is None:
            continue
        if row.method == REFERENCE:
            reference = value
        elif row.ratio is not None:  # a budget row has no one ratio to place it at
            series.setdefault(row.method, []).append((row.ratio, value))
    if not series and reference is None:
        raise EvalInputError("nothing to plot: the summary has no accuracies")
    xs = [x for points in series.values() for x, _ in points] or [0.0, 1.0]
    ys = [y for points in series.values() for _, y in points] + ([reference] if reference is not None else [])
    x0, x1 = min(xs), max(xs)
    span = (x1 - x0) or 1.0
    x0, x1 = x0 - 0.05 * span, x1 + 0.05 * span  # keep the end points off the frame
    y0, y1, y_step = axis(min(ys), max(ys))
    left, top, right, bottom = _MARGIN
    width, height = _SIZE[0] - left - right, _SIZE[1] - top - bottom

    def at(x: float, y: float) -> tuple[float, float]:
        return left + (x - x0) / (x1 - x0) * width, top + (y1 - y) / (y1 - y0) * height

    image = Image.new("RGB", _SIZE, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    for k in range(round((y1 - y0) / y_step) + 1):  # y grid and labels, at the axis' round steps
        y = y0 + k * y_step
        _, py = at(x0, y)
        draw.line([left, py, left + width, py], fill="#dddddd")
        draw.text((left - 8, py), f"{y:g}", fill="black", font=font, anchor="rm")
    for x in sorted(set(xs)):
        px, _ = at(x, y0)
        draw.text((px, top + height + 6), f"{x:g}", fill="black", font=font, anchor="ma")
    draw.rectangle([left, top, left + width, top + height], outline="black")
    draw.text((left + width / 2, _SIZE[1] - 14), "pruning ratio", fill="black", font=font, anchor="mm")
    draw.text((left + width / 2, top / 2), plot_title(table, bench, model), fill="black", font=font, anchor="mm")
    legend_y = top
    if reference is not None:
        _, py = at(x0, reference)
        for sx in range(int(left), int(left + width), 12):
            draw.line([sx, py, min(sx + 6, left + width), py], fill="black", width=2)
        draw.text((left + width + 12, legend_y), f"{REFERENCE} {reference:.1f}", fill="black", font=font)
        legend_y += 18
    for i, (method, points) in enumerate(series.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        pixels = [at(x, y) for x, y in sorted(points)]
        if len(pixels) > 1:
            draw.line(pixels, fill=colour, width=2)
        for px, py in pixels:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        draw.text((left + width + 12, legend_y), method, fill=colour, font=font)
        legend_y += 18
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, format="PNG")
    return out
