"""EvalItem: one multiple-choice question about one video, as every benchmark loader returns it."""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fpcli.eval.errors import EvalInputError

LETTERS = string.ascii_uppercase  # option i is labelled LETTERS[i]; more than 26 options cannot be labelled
MAX_OPTIONS = len(LETTERS)


@dataclass(frozen=True)
class EvalItem:
    """One question. `options` are the option texts without their letters; `answer` is a letter.

    question    the bare question text (a benchmark's own option block, if it ships one, is kept in
                `extra["question_full"]`)
    category    the breakdown the benchmark reports (VideoMME duration, MLVU task type, MVBench
                subtask, LongVideoBench duration group, NExT-QA question type); "" when none
    time_bound  (start, end) seconds inside `video` that the question is about (MVBench on the
                authors' full-length clips), or None for the whole video
    extra       the benchmark's other fields, as read (for per-field breakdowns and debugging)
    """

    id: str
    bench: str
    video: Path
    question: str
    options: tuple[str, ...]
    answer: str
    category: str = ""
    time_bound: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def letters(self) -> list[str]:
        return list(LETTERS[: len(self.options)])

    def index2ans(self) -> dict[str, str]:
        """letter -> option text, what the MMMU-style parser matches content against."""
        return dict(zip(LETTERS, self.options))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "bench": self.bench,
            "video": str(self.video),
            "question": self.question,
            "options": list(self.options),
            "answer": self.answer,
            "category": self.category,
            "time_bound": None if self.time_bound is None else list(self.time_bound),
        }


def make_item(
    *,
    id: Any,
    bench: str,
    video: Path,
    question: str,
    options: list[str],
    answer: Any,
    source: str,
    answer_is_text: bool = False,
    category: Any = "",
    time_bound: tuple[float, float] | None = None,
    extra: dict[str, Any] | None = None,
) -> EvalItem:
    """Check an item and build it. `answer` is a letter or a 0-based option index, or with
    `answer_is_text` the exact text of the right option (MLVU, MVBench files). `source` names the
    file the item came from, for the error message."""
    where = f"item {id}"
    if not options:
        raise EvalInputError(f"{where} has no options", source)
    if len(options) > MAX_OPTIONS:
        raise EvalInputError(f"{where} has {len(options)} options, at most {MAX_OPTIONS} can be labelled A-Z", source)
    if answer_is_text:
        found = index_of(answer, options)
        letter = None if found is None else LETTERS[found]
    else:
        letter = answer_letter(answer, len(options))
    if letter is None:
        raise EvalInputError(f"{where}: answer {answer!r} is not one of its {len(options)} options", source)
    return EvalItem(
        id=str(id),
        bench=bench,
        video=video,
        question=str(question),
        options=tuple(str(o) for o in options),
        answer=letter,
        category="" if category is None else str(category),
        time_bound=time_bound,
        extra=dict(extra or {}),
    )


def answer_letter(answer: Any, count: int) -> str | None:
    """The letter of `answer` among `count` options: a capital letter or an integer index in range."""
    if isinstance(answer, bool) or answer is None:
        return None
    if isinstance(answer, int):
        return LETTERS[answer] if 0 <= answer < count else None
    text = str(answer).strip()
    return text if len(text) == 1 and text in LETTERS[:count] else None


def index_of(text: Any, options: list[str]) -> int | None:
    """The index of the option whose text is exactly `text` (after stripping), else None."""
    stripped = [str(o).strip() for o in options]
    key = str(text).strip()
    return stripped.index(key) if key in stripped else None


def missing_videos(items: list[EvalItem]) -> list[Path]:
    """The distinct videos the items name that are not files, in first-seen order."""
    seen: dict[Path, None] = {}
    for item in items:
        if item.video not in seen and not item.video.is_file():
            seen[item.video] = None
    return list(seen)
