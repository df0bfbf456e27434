"""The model loop of one video: decode and encode once, one session per (method, ratio), every question asked in it.

`run_video` is the unit of work of an evaluation run, and the entry point for distributed runs: a worker that
holds a loaded `VideoLLM` calls it for each `VideoGroup` of a `RunPlan` (fpcli.eval.plan) it is given and sends
the yielded records back to whoever appends them to the run directory:

    for record in run_video(llm, group, bench_protocol, counts=counts):   # one group = one video (and bound)
        run_dir.append(record)

It never raises for a video or an item: a video that cannot be decoded or encoded gives a failure record for
each of its pending questions (kind `broken_video`, or `error`), a session that cannot start fails its questions,
a question that fails (a prompt longer than the context) fails alone. It does not check that the video exists
(the run records missing videos without loading a model; see fpcli.eval.run).

Each record's `timing_s` holds what that question paid: the video's decode and encode are on its first session's
first record (fpcli.model.session_pool, as for ask and batch), a session's pruning and prefix prefill on the
session's first, so that a group's timings add up to what it cost (and the mean per question is the amortised
cost).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable

from fpcli.errors import one_line
from fpcli.eval.items import EvalItem
from fpcli.eval.parsing import Parsed, parse_response
from fpcli.eval.plan import Session, VideoGroup
from fpcli.eval.prompts import build_prompt
from fpcli.eval.protocols import BenchProtocol
from fpcli.eval.rundir import BROKEN_VIDEO, failure_record, failure_records, prediction_record
from fpcli.model.method_catalogue import method_options

if TYPE_CHECKING:
    from fpcli.model import AnswerResult, ClipFeatures, GenerationConfig, VideoLLM
    from fpcli.model.feature_cache import FeatureCache
    from fpcli.model.session_pool import SessionPool

Progress = Callable[[str, int, int], None]


@dataclass
class Counts:
    """What a run cost, counted as the work happens: vision-tower passes, prefix prefills, questions asked."""

    videos_encoded: int = 0
    prefills: int = 0
    questions: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def add(self, other: Counts) -> None:
        self.videos_encoded += other.videos_encoded
        self.prefills += other.prefills
        self.questions += other.questions

    def since(self, earlier: Counts) -> Counts:
        """What was counted after `earlier` (a copy taken before)."""
        return Counts(self.videos_encoded - earlier.videos_encoded, self.prefills - earlier.prefills,
                      self.questions - earlier.questions)


def generation_of(bench_protocol: BenchProtocol, max_new_tokens: int | None = None) -> GenerationConfig:
    """Greedy, the protocol's answer length unless `max_new_tokens` overrides it."""
    from fpcli.model import GenerationConfig

    return GenerationConfig(max_new_tokens=max_new_tokens or bench_protocol.max_new_tokens, temperature=0.0)


def run_video(
    llm: VideoLLM,
    group: VideoGroup,
    bench_protocol: BenchProtocol,
    *,
    frames: int | None = None,
    max_new_tokens: int | None = None,
    seed: int = 0,
    counts: Counts | None = None,
    cache: FeatureCache | None = None,
    progress: Progress | None = None,
) -> Iterator[dict[str, Any]]:
    """The predictions.jsonl records of every pending question of `group`, each yielded as soon as it is answered.

    The video is sampled with `bench_protocol.sampling(llm.layout, *group.time_bound, frames=group.frames or
    frames, default_frames=llm.default_frames)` (a frames sweep's group has its own count) and encoded once (`llm.encode_clip`), or its features read from the feature
    cache `cache` (fpcli.model.cached_encode); each session is one `llm.start(features, ratio=, method=, options=the
    protocol's)` and its questions go through `session.ask(prompt, greedy generation, time_instruction=,
    system_prompt=)` with the protocol's values. `seed` seeds the parsers' random fallback. `counts` (if given) is
    updated before each record is yielded: a caller that saves it with the record never counts work twice after an
    interruption.
    """
    from fpcli.model.cached_encode import features_for
    from fpcli.model.session_pool import SessionPool
    from fpcli.video import VideoError

    counts = counts if counts is not None else Counts()
    bound = group.time_bound or (None, None)
    try:
        sampling = bench_protocol.sampling(llm.layout, *bound, frames=group.frames or frames,
                                           default_frames=llm.default_frames)
        features = features_for(group.video, sampling, cache, lambda: llm, progress=progress)
    except VideoError as exc:
        yield from failure_records(group.sessions, one_line(exc), BROKEN_VIDEO)
        return
    except Exception as exc:  # the vision tower failed (out of memory, ...): this video's questions fail
        yield from failure_records(group.sessions, one_line(exc), "error")
        return
    counts.videos_encoded += features.cache != "hit"  # a feature cache hit runs no vision tower
    generation = generation_of(bench_protocol, max_new_tokens)
    pool = SessionPool(llm, features)
    for session in group.sessions:
        yield from _ask_session(llm, pool, features, session, bench_protocol, generation, seed, counts)


def _ask_session(llm: VideoLLM, pool: SessionPool, features: ClipFeatures, session: Session,
                 bench_protocol: BenchProtocol, generation: GenerationConfig, seed: int, counts: Counts
                 ) -> Iterator[dict[str, Any]]:
    """The records of one (method, ratio or budget) on one encoded video: prune once, then every question on its
    prefix."""
    try:
        options = bench_protocol.prune_options.get(session.method, {})
        asked = pool.session(session.method, session.ratio, options, session.budget)
    except Exception as exc:
        yield from failure_records((session,), one_line(exc), "error")
        return
    fit = {"time_instruction": bench_protocol.time_instruction, "system_prompt": bench_protocol.system_prompt}
    for item in session.items:
        prompt = build_prompt(item, bench_protocol, llm.layout)
        prefills = asked.prefills
        try:
            asked.check_fits(prompt, **fit)
            result = asked.ask(prompt, generation, **fit)
        except Exception as exc:
            counts.prefills += asked.prefills - prefills
            yield failure_record(item, session.method, session.ratio, one_line(exc), budget=session.budget,
                                 frames=session.frames)
            continue
        counts.prefills += asked.prefills - prefills
        counts.questions += 1
        amount = session.ratio if session.budget is None else session.budget  # the fallback's random key
        parsed = parse_response(item, bench_protocol, result.answer, method=session.method, ratio=amount, seed=seed)
        yield {**_record(item, session, result, parsed), "method_options": method_options(session.method, options)}


def _record(item: EvalItem, session: Session, result: AnswerResult, parsed: Parsed) -> dict[str, Any]:
    out = result.to_dict()
    timing = {k: v for k, v in out["timing_s"].items() if k not in ("load", "total")}
    return prediction_record(
        item, session.method, result.ratio, result.answer, parsed, tokens=out["tokens"], timing_s=timing,
        prefill_tflops=out["prefill_tflops"]["after"], peak_memory_mb=out["peak_memory_mb"], warnings=result.warnings,
        budget=session.budget, frames=session.frames,
    )


@dataclass(frozen=True)
class VideoRunner:
    """`run_video` with one run's settings, for whoever executes a plan: this process (fpcli.eval.run) or a
    distributed worker (it is pickled and sent there). Yields each record with the work it cost, so the writer of
    the run directory counts exactly the work of the records it wrote (a worker lost mid-video counts nothing).
    `cache`: the feature cache (a worker opens the same directory on its node)."""

    bench_protocol: BenchProtocol
    frames: int | None = None
    max_new_tokens: int | None = None
    seed: int = 0
    cache: FeatureCache | None = None

    def __call__(self, llm: VideoLLM, group: VideoGroup, progress: Progress | None = None
                 ) -> Iterator[tuple[dict[str, Any], Counts]]:
        counts, saved = Counts(), Counts()
        for record in run_video(llm, group, self.bench_protocol, frames=self.frames,
                                max_new_tokens=self.max_new_tokens, seed=self.seed, counts=counts, cache=self.cache,
                                progress=progress):
            yield record, counts.since(saved)
            saved = Counts(**counts.to_dict())
