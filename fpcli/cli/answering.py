"""One answer of `ask` or one item of `batch`: decode (before the model loads), then the model's `answer`."""

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
    from fpcli.model import GenerationConfig

    clip, decode_s = decode(video, settings, model, reporter)
    result = model.get().answer(
        clip,
        question,
        ratio=settings.prune_ratio,
        method=settings.method,
        prune_options=settings.prune_options(),
        generation=GenerationConfig(
            max_new_tokens=settings.max_new_tokens, temperature=settings.temperature, seed=settings.seed
        ),
        decode_s=decode_s,
        progress=reporter.callback,
    )
    result.timing_s.load = model.load_s_once()
    return result.to_dict()
