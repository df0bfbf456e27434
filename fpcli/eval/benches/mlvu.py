"""MLVU dev, multiple choice (hub: sy1998/MLVU_dev).

Layout, as lmms-eval's tasks/mlvu/utils.py reads it: one parquet of the `test` split with
video_name (a path relative to the dataset folder), question (the question's first line, then its
lettered options), candidates (the option texts), answer and task_type (the 7 dev task types the
score macro-averages); videos at <video_name> under the folder.
"""

from __future__ import annotations

from pathlib import Path

from fpcli.eval.benches.files import field, find_file, first_existing, read_rows
from fpcli.eval.items import LETTERS, EvalItem, make_item


def load(data: Path) -> list[EvalItem]:
    source = find_file(data, "mlvu", ["test-*.parquet", "**/test-*.parquet"])
    items = []
    for i, row in enumerate(read_rows(source)):
        name = str(field(row, "video_name", source, i))
        options = [str(c) for c in field(row, "candidates", source, i)]
        full = str(field(row, "question", source, i))
        answer = field(row, "answer", source, i)
        # lmms-eval scores the answer as a letter; MLVU's own json files hold the option's text
        is_letter = isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip() in LETTERS
        items.append(make_item(
            id=row.get("question_id", f"mlvu_{i}"),
            bench="mlvu",
            video=first_existing([data / name, data / "video" / name]),
            question=full.split("\n")[0],
            options=options,
            answer=answer.strip() if is_letter else answer,
            source=str(source),
            answer_is_text=not is_letter,
            category=field(row, "task_type", source, i),
            extra={"question_full": full, "duration": row.get("duration")},
        ))
    return items
