"""Video-MME (hub: lmms-lab/Video-MME, renamed lmms-eval/Video-MME), without subtitles.

Layout, as lmms-eval's tasks/videomme/utils.py reads it: videomme/test-00000-of-00001.parquet with
question_id, videoID, duration (short/medium/long), domain, sub_category, task_type, question,
options (["A. ...", "B. ...", ...]) and answer (a letter); videos at data/<videoID>.mp4 (.MP4, .mkv).
"""

from __future__ import annotations

import re
from pathlib import Path

from fpcli.eval.benches.files import field, find_file, first_existing, read_rows
from fpcli.eval.items import EvalItem, make_item

_LETTERED = re.compile(r"^\s*([A-Z])\s*[.)]\s*(.*)$", re.DOTALL)


def strip_letter(option: str) -> str:
    """'A. a dog' -> 'a dog': the option text without the letter the file carries."""
    match = _LETTERED.match(option)
    return match.group(2).strip() if match else option.strip()


def load(data: Path) -> list[EvalItem]:
    source = find_file(data, "videomme", ["videomme/test-*.parquet", "**/test-*.parquet"])
    items = []
    for i, row in enumerate(read_rows(source)):
        video_id = str(field(row, "videoID", source, i))
        options = [str(o) for o in field(row, "options", source, i)]
        items.append(make_item(
            id=field(row, "question_id", source, i),
            bench="videomme",
            video=first_existing([data / "data" / f"{video_id}.{ext}" for ext in ("mp4", "MP4", "mkv")]),
            question=field(row, "question", source, i),
            options=[strip_letter(o) for o in options],
            answer=field(row, "answer", source, i),
            source=str(source),
            category=row.get("duration", ""),
            extra={"options_lettered": options, "domain": row.get("domain"), "sub_category": row.get("sub_category"),
                   "task_type": row.get("task_type"), "video_id": video_id},
        ))
    return items
