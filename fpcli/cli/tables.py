"""Tables that never cut a value: whatever the terminal's width, or none (stdout piped to a file or a log).

Rich fits a table to the console's width, and a console that is not a terminal is 80 columns wide: a column that
does not fit is cut with `…` (`forestpru…`, `2.21e-…`), and the data is lost from logs. `print_whole` prints at the
renderable's natural width when stdout is not a terminal (every value whole, however wide), and in a terminal too
narrow for a table prints that table as one block per row (per method) instead.
"""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

UNBOUNDED = 100_000  # columns to measure in: wider than any table we print


def natural_width(console: Console, renderable: RenderableType) -> int:
    """The columns `renderable` takes when nothing limits it (its widest line)."""
    return Measurement.get(console, console.options.update_width(UNBOUNDED), renderable).maximum


def as_blocks(table: Table) -> Group:
    """`table` as one block per row: the first column's value as the block's title, then a `header  value` line
    per other column; the table's title first. Nothing is wider than its longest value."""
    headers = [str(column.header) for column in table.columns]
    columns = [list(column.cells) for column in table.columns]
    width = max(len(header) for header in headers[1:]) + 2 if len(headers) > 1 else 0
    lines: list[RenderableType] = [] if table.title is None else [Text(str(table.title), style="bold")]
    for row in range(table.row_count):
        if lines:
            lines.append(Text())
        lines.append(Text.assemble(columns[0][row], style="bold"))
        for header, cells in zip(headers[1:], columns[1:]):
            lines.append(Text.assemble("  ", header.ljust(width), cells[row]))
    return Group(*lines)


def blocks_where_too_wide(renderable: RenderableType, width: int, console: Console) -> RenderableType:
    """`renderable` with each table wider than `width` columns as blocks (inside Groups too)."""
    if isinstance(renderable, Table):
        return as_blocks(renderable) if natural_width(console, renderable) > width else renderable
    if isinstance(renderable, Group):
        return Group(*(blocks_where_too_wide(part, width, console) for part in renderable.renderables))
    return renderable


def print_whole(out: Console, renderable: RenderableType) -> None:
    """Print `renderable` on `out` without cutting any value (see the module's docs)."""
    if out.is_terminal:
        out.print(blocks_where_too_wide(renderable, out.width, out))
        return
    wide = Console(file=out.file, width=max(out.width, natural_width(out, renderable)), highlight=False,
                   soft_wrap=out.soft_wrap, color_system=None)
    wide.print(renderable)
