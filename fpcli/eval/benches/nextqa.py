"""NExT-QA multiple choice, test split (hub: lmms-eval/NExTQA, config MC).

Layout, as lmms-eval's tasks/nextqa/utils.py reads it: MC/test-00000-of-00001.parquet with video
(an id), qid (a question index within its video), question, a0..a4 (five options), answer (an index)
and type (the question type: CW, CH, TN, TC, DC, DL, DO); videos at NExTVideo/<video>.mp4.
"""

from __future__ import annotations

from pathlib import Path

from fpcli.eval.benches.files import field, find_file, first_existing, read_rows
from fpcli.eval.items import EvalItem, make_item

OPTION_COUNT = 5


def load(data: Path) -> list[EvalItem]:
    source = find_file(data, "nextqa", ["MC/test-*.parquet", "**/MC/test-*.parquet"])
    items = []
    for i, row in enumerate(read_rows(source)):
        video = str(field(row, "video", source, i))
        options = [str(field(row, f"a{k}", source, i)).strip() for k in range(OPTION_COUNT)]
        items.append(make_item(
            id=f"{video}_{field(row, 'qid', source, i)}",  # qid counts questions within one video
            bench="nextqa",
            video=first_existing([data / "NExTVideo" / f"{video}.{ext}" for ext in ("mp4", "MP4")]),
            question=str(field(row, "question", source, i)),  # as is: the authors do not strip it, lmms-eval does
            options=options,
            answer=field(row, "answer", source, i),
            source=str(source),
            category=row.get("type", ""),
        ))
    return items
