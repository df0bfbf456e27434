"""A user's own benchmark: a .jsonl file, one question a line.

    {"id": "q1", "video": "clips/a.mp4", "question": "...", "options": ["...", "..."], "answer": "B", "category": "..."}

`answer` is a letter or a 0-based index; `id` defaults to the line number, `category` to "".
Relative video paths are relative to the file's folder.
"""

from __future__ import annotations

from pathlib import Path

from fpcli.eval.benches.files import field, read_rows
from fpcli.eval.errors import EvalInputError
from fpcli.eval.items import EvalItem, make_item


def load(data: Path) -> list[EvalItem]:
    if not data.is_file():
        raise EvalInputError("jsonl: expected a .jsonl file of questions", data)
    items = []
    for i, row in enumerate(read_rows(data)):
        options = field(row, "options", data, i)
        if not isinstance(options, list):
            raise EvalInputError(f"row {i}: 'options' must be a list of strings", data)
        video = Path(str(field(row, "video", data, i))).expanduser()
        items.append(make_item(
            id=row.get("id", i + 1),
            bench="jsonl",
            video=video if video.is_absolute() else data.parent / video,
            question=field(row, "question", data, i),
            options=[str(o) for o in options],
            answer=field(row, "answer", data, i),
            source=str(data),
            category=row.get("category", ""),
        ))
    return items
