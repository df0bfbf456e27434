"""Answers about one clip, the work unit of `ask` (one question a video) and `batch` (the items that share a video
and its sampling): the clip's features once (the feature cache, or decoding and the vision tower), then one
session per pruning setting, whose pruning and prefix prefill every question with that setting shares. With
`ask --compare`, the model's `compare` (every method on one decoding and encoding).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence, Union

from fpcli.cli.errors import Fatal
from fpcli.cli.progress import Reporter
from fpcli.cli.runner import LazyModel, decode
from fpcli.cli.settings import RunSettings
from fpcli.cli.startup import with_startup
from fpcli.model.method_catalogue import method_options
from fpcli.model.result import round_timings

if TYPE_CHECKING:
    from fpcli.model import GenerationConfig
    from fpcli.model.cached_encode import Check

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
        if hasattr(llm, "check_fits"):  # the LLaVA layouts; a Qwen-VL session checks its prompt when it asks
            llm.check_fits(frames, question, settings.prune_ratio, settings.method, clip=clip,
                           options=settings.prune_options())

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
    sessions: dict[tuple, Any] = {}
    for item in questions:
        settings = item.settings
        try:
            llm = model.get()
            options = settings.prune_options()
            key = (settings.method, settings.prune_ratio, repr(sorted(options.items())))
            if key not in sessions:
                clip = features.reused() if sessions else features  # the clip's cost on the first session only
                sessions[key] = llm.start(clip, ratio=settings.prune_ratio, method=settings.method, options=options)
            sessions[key].check_fits(item.question)
            result = sessions[key].ask(item.question, generation(settings))
        except Fatal:
            raise
        except Exception as exc:
            yield exc
            continue
        result.timing_s.load = model.load_s_once()
        out = result.to_dict()
        yield {**out, "timing_s": with_startup(out["timing_s"]),
               "method_options": method_options(settings.method, options)}


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
        ratio=settings.prune_ratio,
        generation=generation(settings),
        decode_s=decode_s,
        progress=reporter.callback,
        max_pixels=settings.max_pixels,
    )
    comparison.results[0].timing_s.load = model.load_s_once()
    outs = [result.to_dict() for result in comparison.results]
    for out in outs[1:]:  # the one decoding and encoding are the first method's: the records add up to the run
        stages = {key: value for key, value in out["timing_s"].items() if key != "total"}
        out["timing_s"] = round_timings({**stages, "decode": 0.0, "encode": 0.0, "cache_load": 0.0})
    return [{**out, "timing_s": with_startup(out["timing_s"]),
             "method_options": method_options(out["method"], settings.prune_options(out["method"]))} for out in outs]
