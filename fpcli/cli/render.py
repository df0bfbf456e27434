"""Human-readable output of ask and stats, drawn from the same dicts `--json` prints.

Rendering from the JSON form (not the result objects) keeps the two outputs in step: whatever
the terminal shows is in the schema.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

BLOCKS = "▁▂▃▄▅▆▇█"
ANSWER_TIMES = ("load", "decode", "encode", "prune", "prefill", "generate", "total")
STATS_TIMES = ("load", "decode", "encode", "prune", "total")


def _shade(fraction: float) -> str:
    """A colour from red (little kept) through yellow to green (all kept)."""
    if fraction < 0.34:
        return "red"
    return "yellow" if fraction < 0.67 else "green"


def retention_strip(per_frame_kept: Sequence[int], per_frame_total: int) -> Text:
    """One cell per frame, its height and colour by the fraction of the frame's tokens kept; · for none."""
    strip = Text()
    for kept in per_frame_kept:
        fraction = kept / per_frame_total
        if kept == 0:
            strip.append("·", style="dim")
        else:
            level = min(len(BLOCKS) - 1, int(fraction * len(BLOCKS)))
            strip.append(BLOCKS[level], style=_shade(fraction))
    return strip


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _times(timing: dict[str, float], keys: Sequence[str]) -> str:
    return " · ".join(f"{key} {timing[key]:.2f}" for key in keys) + " s"


def _rows(rows: list[tuple[str, str | Text]]) -> Group:
    """`label  value` lines; plain lines rather than a table so they never re-wrap when piped."""
    width = max(len(label) for label, _ in rows) + 2
    return Group(*(Text.assemble((label.ljust(width), "bold"), value) for label, value in rows))


def _frame_total(result: dict[str, Any]) -> int:
    height, width = result["grid"]
    return height * width


def answer_summary(result: dict[str, Any]) -> RenderableType:
    """The compact block printed after an answer."""
    tokens = result["tokens"]
    before, after = tokens["visual_before"], tokens["visual_after"]
    grid = result["grid"]
    frames = Text(f"{result['frames']} × {grid[0]}×{grid[1]}  ")
    frames.append_text(retention_strip(result["per_frame_kept"], _frame_total(result)))
    flops = result["prefill_tflops"]
    return _rows([
        ("visual tokens",
         f"{before} → {after} ({_percent(after, before)} kept) · {result['method']}, ratio {result['ratio']:g}"),
        ("other tokens",
         f"newline {tokens['newline']} · text {tokens['text']} · prompt {tokens['prompt']} · "
         f"generated {tokens['generated']}"),
        ("frames", frames),
        ("time", _times(result["timing_s"], ANSWER_TIMES)),
        ("memory",
         f"peak {result['peak_memory_mb']:.0f} MB · prefill {flops['before']:.3g} → {flops['after']:.3g} TFLOPs"),
        ("model", f"{result['model']} ({result['layout']} layout)"),
    ])


def _clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes):02d}:{rest:05.2f}"


def frame_bars(result: dict[str, Any], width: int = 30) -> Table:
    """A bar per frame with its timestamp and kept count."""
    total = _frame_total(result)
    table = Table(box=None, padding=(0, 1), show_header=True, header_style="bold")
    table.add_column("frame", justify="right")
    table.add_column("time", justify="right")
    table.add_column("kept", justify="right")
    table.add_column("retention")
    for index, (kept, timestamp) in enumerate(zip(result["per_frame_kept"], result["timestamps"])):
        filled = round(width * kept / total)
        bar = Text("█" * filled, style=_shade(kept / total))
        bar.append("░" * (width - filled), style="dim")
        table.add_row(str(index), _clock(timestamp), f"{kept}/{total}", bar)
    return table


def forest_lines(forest: Optional[dict[str, Any]]) -> Optional[Group]:
    """Trees, roots before/after merging, node count and the depth histogram of a ForestPrune run."""
    if forest is None:
        return None
    histogram = forest["depth_histogram"]
    peak = max(histogram, default=0) or 1
    rows: list[tuple[str, str | Text]] = [(
        "forest",
        f"{forest['trees']} trees · roots {forest['roots_before']} → {forest['roots_after']} after merging · "
        f"{forest['nodes']} nodes",
    )]
    for depth, count in enumerate(histogram):
        bar = Text("█" * max(1 if count else 0, round(24 * count / peak)), style="cyan")
        rows.append((f"  depth {depth}", Text.assemble(f"{count:>6}  ", bar)))
    return _rows(rows)


def stats_summary(result: dict[str, Any]) -> RenderableType:
    """Everything `stats` shows for one video and its main method."""
    tokens = result["tokens"]
    before, after = tokens["visual_before"], tokens["visual_after"]
    grid = result["grid"]
    head = _rows([
        ("video", f"{result['video']} · {result['frames']} frames · grid {grid[0]}×{grid[1]}"),
        ("model", f"{result['model']} ({result['layout']} layout, vision tower only)"),
        ("visual tokens",
         f"{before} → {after} ({_percent(after, before)} kept) · newline {tokens['newline']} · "
         f"{result['method']}, ratio {result['ratio']:g}"),
        ("time", _times(result["timing_s"], STATS_TIMES)),
        ("memory", f"peak {result['peak_memory_mb']:.0f} MB"),
    ])
    parts: list[RenderableType] = [head, Text(), frame_bars(result)]
    forest = forest_lines(result["forest"])
    if forest is not None:
        parts += [Text(), forest]
    if result["compare"]:
        parts += [Text(), compare_table(result)]
    return Group(*parts)


def compare_table(result: dict[str, Any]) -> Table:
    """The main method and the --compare ones side by side, on the same features."""
    total = _frame_total(result)
    before = result["tokens"]["visual_before"]
    main = {
        "method": result["method"],
        "tokens": result["tokens"],
        "per_frame_kept": result["per_frame_kept"],
        "timing_s": {"prune": result["timing_s"]["prune"]},
        "forest": result["forest"],
    }
    table = Table(title="methods on the same features", header_style="bold", title_justify="left")
    for name, justify in (("method", "left"), ("kept", "right"), ("%", "right"), ("prune ms", "right"),
                          ("trees", "right"), ("roots", "right"), ("per frame", "left")):
        table.add_column(name, justify=justify)
    for entry in (main, *result["compare"]):
        forest = entry["forest"]
        after = entry["tokens"]["visual_after"]
        table.add_row(
            entry["method"],
            str(after),
            _percent(after, before),
            f"{1000 * entry['timing_s']['prune']:.1f}",
            str(forest["trees"]) if forest else "-",
            f"{forest['roots_before']}→{forest['roots_after']}" if forest else "-",
            retention_strip(entry["per_frame_kept"], total),
        )
    return table
