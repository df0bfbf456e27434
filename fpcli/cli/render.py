"""Human-readable output of ask and stats, drawn from the same dicts `--json` prints.

Rendering from the JSON form (not the result objects) keeps the two outputs in step: whatever
the terminal shows is in the schema. A result with `temporal_groups` (Qwen-VL) counts kept tokens per group of
frames: its strips have a cell per group, timed at the group's first frame.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

BLOCKS = "▁▂▃▄▅▆▇█"
MAX_HISTOGRAM_ROWS = 12
LABEL_WIDTH = 15  # "visual tokens" and two spaces: where a row's value starts
ANSWER_TIMES = ("startup", "load", "decode", "encode", "prune", "prefill", "generate", "total")
STATS_TIMES = ("startup", "load", "decode", "encode", "prune", "total")


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


def fitted_strip(per_frame_kept: Sequence[int], per_frame_total: int, cells: int) -> tuple[Text, int]:
    """The retention strip in at most `cells` cells: each cell the mean of `per` consecutive frames; (strip, per)."""
    per = max(1, -(-len(per_frame_kept) // max(1, cells)))
    groups = [per_frame_kept[i:i + per] for i in range(0, len(per_frame_kept), per)]
    means = [sum(group) / len(group) for group in groups]
    return retention_strip(means, per_frame_total), per


def unit_times(result: dict[str, Any]) -> list[float]:
    """The time of each `per_frame_kept` entry: its frame's, or its temporal group's first frame's."""
    times, groups = result["timestamps"], result.get("temporal_groups")
    return times if groups is None else times[:: -(-len(times) // groups)]


def _unit(result: dict[str, Any]) -> str:
    return "frames" if result.get("temporal_groups") is None else "groups"


def wrapped_strip(result: dict[str, Any], width: int) -> list[Text]:
    """One cell per frame (or group), wrapped to `width`: each line starts with its first frame's time."""
    total = _frame_total(result)
    kept, times = result["per_frame_kept"], unit_times(result)
    cells = max(8, width - LABEL_WIDTH - 10)
    lines = []
    for start in range(0, len(kept), cells):
        line = Text(f"{_clock(times[start], decimals=0):>8}  ", style="dim")
        line.append_text(retention_strip(kept[start:start + cells], total))
        lines.append(line)
    return lines


def _budget(result: dict[str, Any]) -> str:
    """' (budget K)' for a result of a run given --budget, else nothing."""
    return "" if result.get("budget") is None else f" (budget {result['budget']})"


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _times(timing: dict[str, float], keys: Sequence[str], cache: str = "off") -> str:
    """The stages' seconds; on a feature cache hit the cache load stands where decode and encode would."""
    keys = [key for key in keys if key in timing]  # a chat's answers have no startup
    if cache == "hit":
        keys = [key for key in keys if key not in ("decode", "encode")]
        keys.insert(keys.index("load") + 1, "cache_load")
    return " · ".join(f"{key.replace('_', ' ')} {timing[key]:.2f}" for key in keys) + " s"


def _rows(rows: list[tuple[str, str | Text]]) -> Group:
    """`label  value` lines; plain lines rather than a table so they never re-wrap when piped."""
    width = max(len(label) for label, _ in rows) + 2
    return Group(*(Text.assemble((label.ljust(width), "bold"), value) for label, value in rows))


def _frame_total(result: dict[str, Any]) -> int:
    height, width = result["grid"]
    return height * width


def answer_summary(result: dict[str, Any], width: int = 80) -> RenderableType:
    """The compact block printed after an answer; the per-frame strip fits in `width` columns."""
    tokens = result["tokens"]
    before, after = tokens["visual_before"], tokens["visual_after"]
    grid = result["grid"]
    groups = result.get("temporal_groups")
    pairs = "" if groups is None else f" frames in {groups} groups"
    frames = Text(f"{result['frames']}{pairs} × {grid[0]}×{grid[1]}  ")
    cells = width - LABEL_WIDTH - len(frames) - 18
    strip, per = fitted_strip(result["per_frame_kept"], _frame_total(result), cells)
    frames.append_text(strip)
    if per > 1:
        frames.append(f"  ({per} {_unit(result)} a cell)", style="dim")
    flops = result["prefill_tflops"]
    return _rows([
        ("visual tokens",
         f"{before} → {after} ({_percent(after, before)} kept) · {result['method']}, ratio {result['ratio']:g}"
         f"{_budget(result)}"),
        ("other tokens",
         f"newline {tokens['newline']} · text {tokens['text']} · prompt {tokens['prompt']} · "
         f"generated {tokens['generated']}"),
        ("frames", frames),
        ("time", _times(result["timing_s"], ANSWER_TIMES, result["cache"])),
        ("memory",
         f"peak {result['peak_memory_mb']:.0f} MB · prefill {flops['before']:.3g} → {flops['after']:.3g} TFLOPs"),
        ("model", f"{result['model']} ({result['layout']} layout)"),
    ])


def _clock(seconds: float, decimals: int = 2) -> str:
    """mm:ss.ss (or mm:ss); hours roll into the minutes."""
    minutes, rest = divmod(round(seconds, decimals), 60)
    if decimals == 0:
        return f"{int(minutes):02d}:{int(rest):02d}"
    return f"{int(minutes):02d}:{rest:0{3 + decimals}.{decimals}f}"


def frame_bars(result: dict[str, Any], width: int = 30) -> Table:
    """A bar per frame (or group) with its timestamp and kept count."""
    total = _frame_total(result)
    table = Table(box=None, padding=(0, 1), show_header=True, header_style="bold")
    table.add_column(_unit(result)[:-1], justify="right")
    table.add_column("time", justify="right")
    table.add_column("kept", justify="right")
    table.add_column("retention")
    for index, (kept, timestamp) in enumerate(zip(result["per_frame_kept"], unit_times(result))):
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
    rows: list[tuple[str, str | Text]] = [(
        "forest",
        f"{forest['trees']} trees · roots {forest['roots_before']} → {forest['roots_after']} after merging · "
        f"{forest['nodes']} nodes",
    )]
    per = max(1, -(-len(histogram) // MAX_HISTOGRAM_ROWS))  # depths a row, so that at most 12 rows show
    counts = [sum(histogram[i:i + per]) for i in range(0, len(histogram), per)]
    peak = max(counts, default=0) or 1
    for row, count in enumerate(counts):
        low, high = row * per, min(len(histogram), (row + 1) * per) - 1
        label = f"  depth {low}" if low == high else f"  depth {low}-{high}"
        bar = Text("█" * max(1 if count else 0, round(24 * count / peak)), style="cyan")
        rows.append((label, Text.assemble(f"{count:>6}  ", bar)))
    return _rows(rows)


def stats_summary(result: dict[str, Any], width: int = 80, frames_table: bool = False) -> RenderableType:
    """Everything `stats` shows for one video and its main method: the retention as a strip wrapped to `width`
    (a cell per frame), or with `frames_table` a row per frame."""
    tokens = result["tokens"]
    before, after = tokens["visual_before"], tokens["visual_after"]
    grid = result["grid"]
    groups = "" if result.get("temporal_groups") is None else f" in {result['temporal_groups']} groups"
    head = _rows([
        ("video", f"{result['video']} · {result['frames']} frames{groups} · grid {grid[0]}×{grid[1]}"),
        ("model", f"{result['model']} ({result['layout']} layout, vision tower only)"),
        ("visual tokens",
         f"{before} → {after} ({_percent(after, before)} kept) · newline {tokens['newline']} · "
         f"{result['method']}, ratio {result['ratio']:g}{_budget(result)}"),
        ("time", _times(result["timing_s"], STATS_TIMES, result["cache"])),
        ("memory", f"peak {result['peak_memory_mb']:.0f} MB"),
    ])
    retention = frame_bars(result) if frames_table else Group(
        Text(f"retention      one cell per {_unit(result)[:-1]} (▁ to █: share of its tokens kept, · none)",
             style="dim"),
        *wrapped_strip(result, width))
    parts: list[RenderableType] = [head, Text(), retention]
    forest = forest_lines(result["forest"])
    if forest is not None:
        parts += [Text(), forest]
    if result["compare"]:
        parts += [Text(), compare_table(result, width)]
    return Group(*parts)


def compare_table(result: dict[str, Any], width: int = 80) -> Table:
    """The main method and the --compare ones side by side, on the same features (strips fitted to `width`)."""
    total = _frame_total(result)
    cells = max(8, width - 70)
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
            fitted_strip(entry["per_frame_kept"], total, cells)[0],
        )
    return table


def _visual_in_llm(tokens: dict[str, Any]) -> str:
    """'51' (pruned before the LLM), '512→51@L2' (inside it: all 512 enter, 51 from layer 2 on; FrameFusion merges
    at layer 0's input already, '512→130@L0→51@L1'): the visual tokens the decoder layers ran on."""
    stages = [f"{s['visual']}@L{s['from_layer']}" for s in tokens["visual_in_llm"]]
    stages[0] = str(tokens["visual_in_llm"][0]["visual"])
    entered = tokens["prompt"] - tokens["text"] - tokens["newline"]  # visual tokens in the LLM's input
    if entered != tokens["visual_in_llm"][0]["visual"]:  # reduced at layer 0's input
        stages[0] = f"{entered}→{stages[0]}@L0"
    return "→".join(stages)


def answers_table(results: list[dict[str, Any]]) -> RenderableType:
    """`ask --compare`: one row per method, all on one decoding and encoding of the video (the visual tokens the
    LLM's layers ran on, seconds, TFLOPs, peak memory), then each method's answer on its own line."""
    first = results[0]
    grid = first["grid"]
    ratio = max(result["ratio"] for result in results)
    title = Text(f"{first['video']} · {first['frames']} × {grid[0]}×{grid[1]} visual tokens · ratio {ratio:g} · "
                 "one encoding")
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    for name in ("method", "visual", "prune ms", "encode s", "prefill s", "TFLOPs", "peak MB"):
        table.add_column(name, justify="left" if name == "method" else "right", no_wrap=True, min_width=len(name))
    for result in results:
        timing = result["timing_s"]
        table.add_row(
            result["method"],
            _visual_in_llm(result["tokens"]),
            f"{1000 * timing['prune']:.1f}",
            f"{timing['encode']:.2f}",
            f"{timing['prefill']:.3f}",
            f"{result['prefill_tflops']['after']:.3g}",
            f"{result['peak_memory_mb']:.0f}",
        )
    return Group(title, table, _rows([(result["method"], Text(result["answer"])) for result in results]))
