"""One answer of `ask` or one item of `batch`: decode (before the model loads), then the model's `answer`; or, with
`ask --compare`, the model's `compare` (every method on one encoding)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fpcli.cli.progress import Reporter
from fpcli.cli.runner import LazyModel, decode
from fpcli.cli.settings import RunSettings


def answer_video(model: LazyModel, video: Path, question: str, settings: RunSettings, reporter: Reporter
                 ) -> dict[str, Any]:
    """Sample (a bad video fails fast), encode, prune and answer; the result in its JSON form, with the model's
    load time on the first result of the process."""
    clip, decode_s = decode(video, settings, model, reporter)
    result = model.get().answer(
        clip,
        question,
        ratio=settings.prune_ratio,
        method=settings.method,
        prune_options=settings.prune_options(),
        generation=generation(settings),
        decode_s=decode_s,
        progress=reporter.callback,
        max_pixels=settings.max_pixels,
    )
    result.timing_s.load = model.load_s_once()
    return result.to_dict()


def compare_video(model: LazyModel, video: Path, question: str, settings: RunSettings, reporter: Reporter
                  ) -> list[dict[str, Any]]:
    """--method and every --compare method answering on one decoding and one encoding: one JSON-form result per
    method, the model's load time on the process's first."""
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
    return [result.to_dict() for result in comparison.results]


def generation(settings: RunSettings):
    """The GenerationConfig of the settings."""
    from fpcli.model import GenerationConfig

    return GenerationConfig(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                            seed=settings.seed)
