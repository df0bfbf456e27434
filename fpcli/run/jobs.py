"""The jobs of `forestprune batch`: reading a jobs file, item ids, and answering them in work units.

A jobs file is YAML (a list of items, or a mapping with a `jobs:` list; `.json` arrays read the same) or JSON lines
(`.jsonl`/`.ndjson`, one item per line). An item is
    {video: PATH, question: TEXT, id: ANY (optional), options: {ratio, budget, method, frames, fps, max_pixels,
     max_new_tokens, temperature, seed, or any option of the item's method: tau_s, tau_p, ...} (optional,
     override the command-line values)}
Relative video paths are relative to the jobs file. Without `id`, an item's id is the first 12 hex digits of the
SHA-1 of its canonical JSON {video, question, options}: stable when items are reordered or added, so resuming keeps
working after the jobs file is edited. A file that cannot be read or parsed is an InputError (exit 2); an item
that cannot run is recorded as an error with the reason (`problem`).

Items that share a video and its sampling are one work unit (`clip_units`, `answer_jobs`; on Ray the unit of a
worker): the clip is decoded and encoded once per run (or read from the feature cache once), and items with the
same pruning setting share one session. Units run in the order of their first item, the items of a unit in the
jobs file's order.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import yaml

from fpcli.errors import InputError, one_line, retryable
from fpcli.run.answering import Question, answer_clip
from fpcli.run.settings import RunSettings
from fpcli.run.source import LazyModel


def yaml_problem(exc: yaml.YAMLError) -> str:
    """`expected ',' or '}', but got '?' (line 2)` rather than PyYAML's multi-line report."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} (line {mark.line + 1})" if mark is not None else problem


ITEM_KEYS = ("video", "question", "id", "options")
JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass
class Job:
    """One item of the jobs file; `problem` says why it cannot run (it is then recorded as an error)."""

    id: str
    video: Any
    question: Any
    options: dict[str, Any] = field(default_factory=dict)
    problem: Optional[str] = None

    def settings(self, base: RunSettings) -> RunSettings:
        """The command-line settings with this item's options applied and checked (ValueError if bad)."""
        if self.problem is not None:
            raise ValueError(self.problem)
        return base.override(self.options)


def job_id(item: Any) -> str:
    if isinstance(item, dict):
        item = {"video": item.get("video"), "question": item.get("question"), "options": item.get("options") or {}}
    canonical = json.dumps(item, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:12]


def _load_items(path: Path) -> list[Any]:
    """The raw items of a jobs file; a file that does not parse is a usage error (exit 2)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read jobs file: {exc.strerror}", path) from exc
    if path.suffix.lower() in JSONL_SUFFIXES:
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputError(f"line {number} of the jobs file is not valid JSON: {exc.msg}", path) from exc
        return items
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"jobs file is not valid YAML: {yaml_problem(exc)}", path) from exc
    if isinstance(data, dict) and "jobs" in data:
        data = data["jobs"]
    if data is None:
        data = []
    if not isinstance(data, list):
        raise InputError("jobs file must hold a list of items (or `jobs:` with a list)", path)
    return data


def _job(item: Any, base_dir: Path) -> Job:
    if not isinstance(item, dict):
        return Job(job_id(item), None, None, problem=f"item must be a mapping with video and question, got {item!r}")
    raw_id = item.get("id")
    ident = job_id(item) if raw_id is None else str(raw_id)
    video, question, options = item.get("video"), item.get("question"), item.get("options") or {}
    problem = None
    unknown = [key for key in item if key not in ITEM_KEYS]
    if unknown:
        problem = f"unknown key '{unknown[0]}' (an item has {', '.join(ITEM_KEYS)}; per-item settings go in options)"
    elif not isinstance(video, str) or not video:
        problem = "item has no video (a path)"
    elif not isinstance(question, str) or not question:
        problem = "item has no question (text)"
    elif not isinstance(options, dict):
        problem = f"options must be a mapping, got {options!r}"
    if problem is None:
        path = Path(video).expanduser()
        video = path if path.is_absolute() else base_dir / path
    return Job(ident, video, question, options if isinstance(options, dict) else {}, problem)


def read_jobs(path: Path) -> list[Job]:
    """The items of a jobs file, with ids; no items, an item without video or question (or otherwise malformed)
    and duplicate ids are usage errors naming the item (1-based)."""
    jobs = [_job(item, path.parent) for item in _load_items(path)]
    if not jobs:
        raise InputError("jobs file has no items", path,
                         hint="an item is {video: PATH, question: TEXT}; see 'forestprune batch --help'")
    bad = next(((number, job) for number, job in enumerate(jobs, 1) if job.problem is not None), None)
    if bad is not None:
        raise InputError(f"item {bad[0]} of the jobs file: {bad[1].problem}", path)
    seen = Counter(job.id for job in jobs)
    duplicates = [ident for ident, count in seen.items() if count > 1]
    if duplicates:
        raise InputError(
            f"duplicate item id '{duplicates[0]}'", path, hint="give each item its own id (identical items share one)"
        )
    return jobs


def error_record(job: Job, error: str, retryable: bool = True) -> dict[str, Any]:
    """The results line of an item that failed with `error` (one line); `retryable`: whether running it again
    can succeed (fpcli.errors.retryable)."""
    return {
        "id": job.id,
        "status": "error",
        "video": None if job.video is None else str(job.video),
        "question": job.question,
        "error": error,
        "retryable": retryable,
    }


def unit_key(job: Job, base: RunSettings) -> tuple[Any, ...]:
    """What items of one work unit share: the video, the sampling (frames, fps: items that set neither get the
    model's default, the same for every item of a run) and Qwen-VL's max_pixels; an item whose options do not check
    is a unit of its own."""
    try:
        settings = job.settings(base)
    except ValueError:
        return ("invalid", job.id)
    return (str(Path(job.video).resolve()), settings.frames, settings.fps, settings.max_pixels)


def clip_units(jobs: list[Job], base: RunSettings) -> list[list[Job]]:
    """`jobs` grouped by `unit_key`, in the order of each unit's first item, the items of a unit in their order."""
    units: dict[tuple[Any, ...], list[Job]] = {}
    for job in jobs:
        units.setdefault(unit_key(job, base), []).append(job)
    return list(units.values())


def answer_jobs(llm: LazyModel, jobs: list[Job], base: RunSettings,
                on_error: Optional[Callable[[Exception], None]] = None) -> Iterator[dict[str, Any]]:
    """The ok or error record of each job, as each finishes: unit by unit (`clip_units`), so `jobs` of one unit
    come back in their order. Each unit's clip is decoded and encoded once (or read from the feature cache), its
    items with one pruning setting share a session (fpcli.run.answering.answer_clip). A failure of an item is
    recorded, not raised, and a unit whose items have bad options, a method the model's family cannot run (known
    from its layout) or a bad video loads no model; a model that cannot load ends the batch (errors.Fatal): no item
    could run."""
    for unit in clip_units(jobs, base):
        try:
            questions = [Question(job.question, job.settings(base)) for job in unit]
        except ValueError as exc:  # an invalid item: a unit of its own
            yield error_record(unit[0], one_line(exc), retryable=False)
            continue
        runnable = []
        for job, question in zip(unit, questions):
            try:
                llm.check_methods([question.settings.method])
                runnable.append((job, question))
            except InputError as exc:
                yield error_record(job, one_line(exc), retryable=False)
        if not runnable:
            continue
        unit = [job for job, _ in runnable]
        for job, outcome in zip(unit, answer_clip(llm, unit[0].video, [question for _, question in runnable])):
            if isinstance(outcome, Exception):
                if on_error is not None:
                    on_error(outcome)
                yield error_record(job, one_line(outcome), retryable(outcome))
            else:
                yield {"id": job.id, "status": "ok", **outcome}
