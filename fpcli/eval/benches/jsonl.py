"""A user's own benchmark: a .jsonl file, one question a line.

    {"id": "q1", "video": "clips/a.mp4", "question": "...", "options": ["...", "..."], "answer": "B", "category": "..."}

`answer` is a letter or a 0-based index; `id` defaults to the line number (1-based, blank lines counted, as an
editor shows it), `category` to "". Relative video paths are relative to the file's folder. Errors name the line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fpcli.eval.errors import EvalInputError
from fpcli.eval.items import EvalItem, make_item


def numbered_rows(data: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line, numbered from 1 as an editor shows them; a line that is not a
    JSON object is bad input naming it."""
    try:
        lines = data.read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as err:
        raise EvalInputError(f"cannot be read ({' '.join(str(err).split())[:200]})", data) from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise EvalInputError(f"line {number} is not valid JSON ({getattr(err, 'msg', err)})", data) from None
        if not isinstance(row, dict):
            raise EvalInputError(f"line {number} is not a JSON object (one question a line)", data)
        rows.append((number, row))
    return rows


def _item(data: Path, number: int, row: dict[str, Any]) -> EvalItem:
    where = f"line {number}"
    for name in ("video", "question", "options", "answer"):
        if row.get(name) is None:
            raise EvalInputError(f"{where} has no {name!r} field", data)
    if not isinstance(row["options"], list):
        raise EvalInputError(f"{where}: 'options' must be a list of strings", data)
    video = Path(str(row["video"])).expanduser()
    try:
        return make_item(
            id=row.get("id", number), bench="jsonl", video=video if video.is_absolute() else data.parent / video,
            question=row["question"], options=[str(o) for o in row["options"]], answer=row["answer"],
            source=str(data), category=row.get("category", ""),
        )
    except EvalInputError as err:  # make_item names the item by id: say the line too
        raise EvalInputError(f"{where}: {err.what}", data) from None


def load(data: Path) -> list[EvalItem]:
    if not data.exists():
        raise EvalInputError("jsonl: no such file (--data is the .jsonl file of questions)", data)
    if not data.is_file():
        raise EvalInputError("jsonl: expected a .jsonl file of questions", data)
    return [_item(data, number, row) for number, row in numbered_rows(data)]
