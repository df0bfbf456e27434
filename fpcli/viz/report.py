"""The shareable report: one self-contained HTML page (`--viz FILE.html`) that opens in a browser offline.

The comparison table (one row per method: tokens, times, TFLOPs, memory, answer) comes first, then the pictures, each
inlined as a base64 PNG data URI under its caption: the page loads nothing, no script, no style sheet, no font.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from typing import Sequence

from PIL import Image

STYLE = """body{background:#181818;color:#e6e6e6;font-family:sans-serif;margin:1.5em}
table{border-collapse:collapse;margin-bottom:1.5em}th,td{border:1px solid #555;padding:.3em .6em;text-align:left;
vertical-align:top}th{background:#2a2a2a}td.num{text-align:right}figure{margin:0 0 1.5em 0}
figcaption{color:#aaa;margin-bottom:.3em}img{max-width:100%;image-rendering:auto}"""


@dataclass(frozen=True)
class Table:
    """A table of the methods: a header row and one row of cells per method."""

    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    numeric: Sequence[bool] = field(default=())  # right-aligned columns (numbers), by position


@dataclass(frozen=True)
class Figure:
    """A picture and what it shows."""

    caption: str
    image: Image.Image


def data_uri(image: Image.Image) -> str:
    """The image as a PNG data URI."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def table_html(table: Table) -> str:
    numeric = list(table.numeric) + [False] * (len(table.headers) - len(table.numeric))
    head = "".join(f"<th>{html.escape(name)}</th>" for name in table.headers)
    opening = ['<td class="num">' if right else "<td>" for right in numeric]
    body = "".join(
        "<tr>" + "".join(f"{opening[i]}{html.escape(str(cell))}</td>" for i, cell in enumerate(row)) + "</tr>\n"
        for row in table.rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"


def page(title: str, figures: Sequence[Figure], table: Table | None = None, notes: Sequence[str] = ()) -> str:
    """The whole page: title, notes (one paragraph each), the table, then every figure."""
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        f"<h1>{html.escape(title)}</h1>\n",
        *(f"<p>{html.escape(note)}</p>\n" for note in notes),
        table_html(table) if table is not None else "",
        *(f"<figure>\n<figcaption>{html.escape(figure.caption)}</figcaption>\n"
          f"<img src=\"{data_uri(figure.image)}\" alt=\"{html.escape(figure.caption)}\">\n</figure>\n"
          for figure in figures),
        "</body>\n</html>\n",
    ]
    return "".join(parts)
