"""LongVideoBench val, video + question without interleaved subtitles (hub: longvideobench/LongVideoBench).

Layout, as lmms-eval's tasks/longvideobench/utils.py reads it (task longvideobench_val_v): the
`validation` split, validation-00000-of-00001.parquet with id, video_path, question, option0..option4
("N/A" pads questions with fewer options), correct_choice (an index), duration_group and
question_category; videos at videos/<video_path>. The authors read lvb_val.json, the same rows with
`candidates` lists: either file is accepted, the parquet first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fpcli.eval.benches.files import field, find_file, read_rows
from fpcli.eval.items import EvalItem, make_item

_PAD = "N/A"


def options_of(row: dict[str, Any]) -> list[str]:
    """The row's options: its `candidates` list, else option0.. up to the first "N/A" or gap."""
    if row.get("candidates") is not None:
        return [str(c) for c in row["candidates"]]
    options = []
    for i in range(26):
        value = row.get(f"option{i}")
        if value is None or value == _PAD:
            break
        options.append(str(value))
    return options


def load(data: Path) -> list[EvalItem]:
    source = find_file(data, "longvideobench", ["validation-*.parquet", "**/validation-*.parquet", "lvb_val.json"])
    items = []
    for i, row in enumerate(read_rows(source)):
        items.append(make_item(
            id=field(row, "id", source, i),
            bench="longvideobench",
            video=data / "videos" / str(field(row, "video_path", source, i)),
            question=field(row, "question", source, i),
            options=options_of(row),
            answer=field(row, "correct_choice", source, i),
            source=str(source),
            category=row.get("duration_group", ""),
            extra={"question_category": row.get("question_category"), "duration": row.get("duration")},
        ))
    return items
