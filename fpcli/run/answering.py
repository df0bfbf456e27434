"""Answers about one clip, the work unit of `ask` (one question a video), `batch` (the items that share a video and
its sampling) and their Ray workers: the clip's features once (the feature cache, or decoding and the vision
tower), then one session per pruning setting (fpcli.model.session_pool), whose pruning and prefix prefill every
question with that setting shares. With `ask --compare`, the model's `compare` (every method on one decoding and
encoding). Results come back in their JSON form, with the model's load time on the run's first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence, Union

from fpcli.errors import Fatal
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
        yield result.to_dict()


def answer_video(model: LazyModel, video: Path, question: str, settings: RunSettings) -> dict[str, Any]:
    """The answer of `ask` for one video, in its JSON form; its failure raised."""
    (outcome,) = answer_clip(model, video, [Question(question, settings)])
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def compare_video(model: LazyModel, video: Path, question: str, settings: RunSettings, reporter: Reporter
                  ) -> list[dict[str, Any]]:
    """--method and every --compare method answering on one decoding and one encoding: one JSON-form result per
    method, the model's load time on the process's first."""
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
    return [result.to_dict() for result in comparison.results]


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
