"""A run directory: predictions.jsonl (one line per item x method x ratio or budget x frame count of a sweep), run.json,
summary.json.

    predictions.jsonl  appended and fsynced as each prediction finishes; reopening resumes
    run.json           what the run is (bench, protocol, model, layout, shard) and its counters
                       (videos encoded, prefills, questions asked), summed over resumed invocations
    summary.json       scores of one run, or of several merged (shards of one bench, or benches)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fpcli.eval.errors import EvalError, EvalInputError
from fpcli.eval.items import EvalItem
from fpcli.eval.parsing import Parsed
from fpcli.eval.plan import PredictionKey, Session, prediction_key
from fpcli.eval.protocols import get_protocol
from fpcli.eval.scoring import REFERENCE, GroupScore, score_groups
from fpcli.eval.table1 import Table1, build_table1
from fpcli.jsonl import JsonlLog, read_records, replace_file

PREDICTIONS = "predictions.jsonl"
RUN = "run.json"
SUMMARY = "summary.json"
OK, FAILED = "ok", "error"
MISSING_VIDEO = "missing_video"  # the `kind` of a failure whose video is not a file
BROKEN_VIDEO = "broken_video"  # ... whose video cannot be decoded


def record_key(record: dict[str, Any]) -> PredictionKey:
    """A record's prediction key; records written before budgets and frame sweeps have neither (None)."""
    budget, frames = record.get("budget"), record.get("frames")
    ratio = None if budget is not None else float(record["ratio"])
    return prediction_key(str(record["bench"]), str(record["id"]), str(record["method"]), ratio, budget, frames)


def prediction_record(
    item: EvalItem,
    method: str,
    ratio: float,
    response: str,
    parsed: Parsed,
    *,
    tokens: dict[str, int],
    timing_s: dict[str, float],
    prefill_tflops: float | None = None,
    peak_memory_mb: float | None = None,
    warnings: list[str] | None = None,
    budget: int | None = None,
    frames: int | None = None,
) -> dict[str, Any]:
    """The predictions.jsonl line of one answered question; `warnings` are its clip's (frames capped by the rate,
    a file cut short). With a `budget`, `ratio` is the effective one of this answer (1 - budget / visual tokens);
    `frames` is a frames sweep's frame count (None in a run of one frame count)."""
    return {
        "id": item.id, "bench": item.bench, "category": item.category, "video": str(item.video),
        "method": method, "ratio": 0.0 if method == REFERENCE else float(ratio), "budget": budget, "frames": frames,
        "status": OK,
        "response": response, "parsed": parsed.parsed, "fallback": parsed.fallback, "answer": item.answer,
        "correct": parsed.correct, "tokens": tokens, "timing_s": timing_s,
        "prefill_tflops": prefill_tflops, "peak_memory_mb": peak_memory_mb, "warnings": list(warnings or []),
    }


def failure_record(item: EvalItem, method: str, ratio: float | None, error: str, kind: str = "error", *,
                   budget: int | None = None, frames: int | None = None) -> dict[str, Any]:
    """The predictions.jsonl line of a question that could not be answered (retried on resume); `correct` is null:
    it was not scored, so a sum over `correct` counts only answered questions. With a budget, `ratio` is null."""
    return {
        "id": item.id, "bench": item.bench, "category": item.category, "video": str(item.video),
        "method": method, "ratio": prediction_key(item.bench, item.id, method, ratio, budget)[3], "budget": budget,
        "frames": frames, "status": FAILED,
        "kind": kind, "error": error, "answer": item.answer, "correct": None,
    }


def failure_records(sessions: Iterable[Session], error: str, kind: str = "error") -> Iterator[dict[str, Any]]:
    """A failure record for every question of `sessions` (a video or a session that could not run)."""
    for session in sessions:
        for item in session.items:
            yield failure_record(item, session.method, session.ratio, error, kind, budget=session.budget,
                                 frames=session.frames)


@dataclass
class RunInfo:
    """run.json: what was run, and what it cost (counters summed over resumed invocations)."""

    bench: str
    protocol: str
    model: str
    layout: str
    shard: str | None = None
    videos_encoded: int = 0
    prefills: int = 0
    questions: int = 0

    def same_run(self, other: RunInfo) -> bool:
        fields = ("bench", "protocol", "model", "layout", "shard")
        return all(getattr(self, f) == getattr(other, f) for f in fields)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_run_info(run_dir: Path) -> RunInfo | None:
    path = run_dir / RUN
    if not path.exists():
        return None
    try:
        return RunInfo(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as err:
        raise EvalError(f"cannot be read ({' '.join(str(err).split())[:200]})", path) from None


def write_run_info(run_dir: Path, info: RunInfo) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    replace_file(run_dir / RUN, (json.dumps(info.to_dict(), indent=2) + "\n").encode("utf-8"))


class RunDir:
    """An open run directory: checks that it holds this run (or nothing), resumes its predictions."""

    def __init__(self, path: Path, info: RunInfo) -> None:
        existing = read_run_info(path)
        if existing is not None and not existing.same_run(info):
            raise EvalInputError(
                f"holds another run ({existing.bench}, {existing.protocol}, {existing.model}, shard "
                f"{existing.shard}); give a new --out to start this one", path)
        self.path = path
        self.info = existing or info
        write_run_info(path, self.info)
        self.log = JsonlLog(path / PREDICTIONS, record_key, lambda r: r.get("status") == OK)

    @property
    def done(self) -> set[PredictionKey]:
        return set(self.log.done)

    def append(self, record: dict[str, Any]) -> None:
        self.log.append(record)

    def count(self, *, videos_encoded: int = 0, prefills: int = 0, questions: int = 0) -> None:
        """Add to the run's cost counters and save them."""
        self.info.videos_encoded += videos_encoded
        self.info.prefills += prefills
        self.info.questions += questions
        write_run_info(self.path, self.info)

    def close(self) -> None:
        self.log.close()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class RunSummary:
    """summary.json: scores per bench x method x ratio, Table 1, and run-level counts."""

    protocol: str
    model: str
    run_dirs: list[str]
    groups: list[GroupScore]
    table1: Table1
    videos_encoded: int
    prefills: int
    questions: int
    missing_videos: list[str] = field(default_factory=list)
    broken_videos: list[str] = field(default_factory=list)
    failed: int = 0
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # bench -> the protocol's constants used

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["groups"] = [g.to_dict() for g in self.groups]
        out["table1"] = self.table1.to_dict()
        return out


def summarize(run_dirs: list[Path]) -> RunSummary:
    """One summary of one or more run directories (shards, or benchmarks for Table 1). They must
    share protocol and model; a prediction found twice counts once (the answered one)."""
    if not run_dirs:
        raise EvalInputError("give at least one run directory")
    infos = []
    for run_dir in run_dirs:
        info = read_run_info(run_dir)
        if info is None:
            raise EvalInputError(f"is not a run directory (no {RUN})", run_dir)
        infos.append(info)
    for info, run_dir in zip(infos[1:], run_dirs[1:]):
        if (info.protocol, info.model, info.layout) != (infos[0].protocol, infos[0].model, infos[0].layout):
            raise EvalInputError(
                f"was run with {info.protocol}/{info.model}, not {infos[0].protocol}/{infos[0].model} "
                f"like {run_dirs[0]}: runs of different protocols or models do not merge", run_dir)
    merged: dict[PredictionKey, dict[str, Any]] = {}
    for run_dir in run_dirs:
        for record in read_records(run_dir / PREDICTIONS)[0]:
            key = record_key(record)
            if key not in merged or (merged[key].get("status") != OK and record.get("status") == OK):
                merged[key] = record
    records = list(merged.values())
    protocol = get_protocol(infos[0].protocol)
    groups = score_groups(records, protocol)
    missing = sorted({str(r["video"]) for r in records if r.get("kind") == MISSING_VIDEO})
    broken = sorted({str(r["video"]) for r in records if r.get("kind") == BROKEN_VIDEO})
    return RunSummary(
        protocol=infos[0].protocol, model=infos[0].model, run_dirs=[str(d) for d in run_dirs], groups=groups,
        table1=build_table1(groups), videos_encoded=sum(i.videos_encoded for i in infos),
        prefills=sum(i.prefills for i in infos), questions=sum(i.questions for i in infos),
        missing_videos=missing, broken_videos=broken, failed=sum(r.get("status") != OK for r in records),
        settings={b: protocol.for_bench(b).to_dict() for b in sorted({g.bench for g in groups})},
    )


def write_summary(path: Path, summary: RunSummary) -> None:
    """summary.json at `path` (a run directory's, or the merge's output), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, (json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
