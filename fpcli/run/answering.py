"""Answers about one clip, the work unit of `ask` (one question a video), `batch` (the items that share a video and
its sampling) and their Ray workers: the clip's features once (the feature cache, or decoding and the vision
tower), then one session per pruning setting (fpcli.model.session_pool), whose pruning and prefix prefill every
question with that setting shares. With `ask --compare`, the model's `compare` (every method on one decoding and
encoding). Results come back in their JSON form, with the model's load time on the run's first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence, Union

from fpcli.errors import Fatal
from fpcli.model.method_catalogue import method_options
from fpcli.model.result import round_timings
from fpcli.model.session_pool import SessionPool
from fpcli.run.settings import RunSettings
from fpcli.run.source import LazyModel, Reporter, decode

if TYPE_CHECKING:
    from fpcli.model import AnswerResult, GenerationConfig, Session, StatsResult
    from fpcli.model.cached_encode import Check
    from fpcli.video import VideoClip

Outcome = Union[dict[str, Any], Exception]  # a question's result in its JSON form, or what it failed with


@dataclass(frozen=True)
class Question:
    """One question about a clip and the settings it is answered with (a batch item's own, or the command's)."""

    question: str
    settings: RunSettings


def generation(settings: RunSettings) -> GenerationConfig:
    from fpcli.model import GenerationConfig

    return GenerationConfig(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                            seed=settings.seed)


def fits(question: str, settings: RunSettings) -> Check:
    """The check that the prompt of `question` fits the context, run before the clip is encoded."""

    def check(llm, frames: int, clip) -> None:
        llm.check_fits(frames, question, method=settings.method, clip=clip, options=settings.prune_options(),
                       max_new_tokens=settings.max_new_tokens, max_pixels=settings.max_pixels, **settings.pruning())

    return check


def answer_clip(model: LazyModel, video: Path, questions: Sequence[Question]) -> Iterator[Outcome]:
    """Each question's outcome, in order. Every question has the first one's sampling (the caller groups them).

    A failure to get the clip's features is every question's; a failing question (e.g. one too long for the
    context) is its own and the others go on. The first result reports the model's load (once per process) and
    the clip's decode, encode and cache load; later ones 0, so that results add up to what the run cost.
    Fatal (the model cannot load) and KeyboardInterrupt propagate.
    """
    # One question: its context check runs before the tower, so a question too long costs no encoding.
    check = fits(questions[0].question, questions[0].settings) if len(questions) == 1 else None
    try:
        features = model.features(video, questions[0].settings, check=check)
    except Fatal:
        raise
    except Exception as exc:
        for _ in questions:
            yield exc
        return
    pool = SessionPool(model.get(), features)
    for item in questions:
        settings = item.settings
        try:
            pruning = settings.pruning()
            session = pool.session(settings.method, pruning["ratio"], settings.prune_options(), pruning["budget"])
            session.check_fits(item.question)
            result = session.ask(item.question, generation(settings))
        except Fatal:
            raise
        except Exception as exc:
            yield exc
            continue
        result.timing_s.load = model.load_s_once()
        yield {**result.to_dict(), "method_options": method_options(settings.method, settings.prune_options())}


def answer_video(model: LazyModel, video: Path, question: str, settings: RunSettings) -> dict[str, Any]:
    """The answer of `ask` for one video, in its JSON form; its failure raised."""
    (outcome,) = answer_clip(model, video, [Question(question, settings)])
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def compare_video(model: LazyModel, video: Path, question: str, settings: RunSettings, reporter: Reporter
                  ) -> list[dict[str, Any]]:
    """--method and every --compare method answering on one decoding and one encoding: one JSON-form result per
    method, the model's load time on the process's first, the decoding and encoding on the first method's only."""
    clip, decode_s = decode(video, settings, model, reporter)
    comparison = model.get().compare(
        clip,
        question,
        {name: settings.prune_options(name) for name in settings.compared()},
        generation=generation(settings),
        decode_s=decode_s,
        progress=reporter.callback,
        max_pixels=settings.max_pixels,
        **settings.pruning(),
    )
    comparison.results[0].timing_s.load = model.load_s_once()
    outs = [result.to_dict() for result in comparison.results]
    for out in outs[1:]:  # the one decoding and encoding are the first method's: the records add up to the run
        stages = {key: value for key, value in out["timing_s"].items() if key != "total"}
        out["timing_s"] = round_timings({**stages, "decode": 0.0, "encode": 0.0, "cache_load": 0.0})
    return [{**out, "method_options": method_options(out["method"], settings.prune_options(out["method"]))}
            for out in outs]


def inspect_video(model: LazyModel, video: Path, settings: RunSettings,
                  decoded: Optional[list[VideoClip]] = None) -> StatsResult:
    """What `stats` shows of one video: the clip's features (the cache, or decoding before the model loads) pruned
    by --method and every --compare method (`VideoLLM.inspect`), the load time on the run's first. `decoded` gets
    the clip when one was decoded."""
    features = model.features(video, settings, decoded=decoded)
    result = model.get().inspect(
        features,
        method=settings.method,
        options=settings.prune_options(),
        compare={name: settings.prune_options(name) for name in settings.methods()[1:]},
        **settings.pruning(),
    )
    result.timing_s.load = model.load_s_once()
    return result


def open_chat(model: LazyModel, video: Path, settings: RunSettings, history: bool) -> Session:
    """The session `chat` asks its questions in: the clip's features once, pruned once (or by an in-LLM method in
    each question's prefill)."""
    features = model.features(video, settings)
    return model.get().start(features, method=settings.method, options=settings.prune_options(), history=history,
                             **settings.pruning())


def ask_in_chat(model: LazyModel, session: Session, question: str, settings: RunSettings) -> AnswerResult:
    """One question of `chat`: checked against the context (ModelInputError: this question fails, the chat goes
    on), answered, the model's load time on the chat's first answer."""
    session.check_fits(question)
    result = session.ask(question, generation(settings))
    result.timing_s.load = model.load_s_once()
    return result


@dataclass
class PicturedAnswers:
    """The answers of `ask --viz` as results (each with what its method kept), and the frames they are about."""

    clip: VideoClip
    results: list[AnswerResult]
    temporal_patch_size: int  # frames per grid of features
    frame_size: Optional[tuple[int, int]] = field(default=None)  # what the tower saw; None: squashed to a square


def answers_with_frames(model: LazyModel, video: Path, question: str, settings: RunSettings,
                        reporter: Reporter) -> PicturedAnswers:
    """`ask --viz`: the answer (with --compare each method's, on one decoding and encoding) as results, and the
    sampled frames they are about (a feature-cache hit decodes them: a picture shows pixels)."""
    if settings.compare:
        clip, decode_s = decode(video, settings, model, reporter)
        comparison = model.get().compare(
            clip, question, {name: settings.prune_options(name) for name in settings.compared()},
            ratio=settings.prune_ratio, generation=generation(settings), decode_s=decode_s,
            progress=reporter.callback, max_pixels=settings.max_pixels)
        results, frame_size = comparison.results, comparison.frame_size
    else:
        decoded: list[VideoClip] = []
        features = model.features(video, settings, decoded=decoded, check=fits(question, settings))
        session = SessionPool(model.get(), features).session(settings.method, settings.prune_ratio,
                                                             settings.prune_options())
        session.check_fits(question)
        results = [session.ask(question, generation(settings))]
        clip = decoded[0] if decoded else decode(video, settings, model, reporter)[0]
        frame_size = model.get().frame_size(features)
    results[0].timing_s.load = model.load_s_once()
    return PicturedAnswers(clip, results, model.get().temporal_patch_size, frame_size)
