"""`forestprune ask VIDEO... QUESTION`: answer a question about one or more videos with one loaded model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from fpcli.cli import errors
from fpcli.cli.loading import LazyModel, decode, each_video, expand_videos
from fpcli.cli.options import (
    Attention,
    Attn,
    Config,
    Debug,
    Device,
    DType,
    DTypeOpt,
    Fps,
    Frames,
    Json,
    LayoutOpt,
    MaxNewTokens,
    Method,
    Model,
    Quiet,
    Ratio,
    RunSettings,
    Seed,
    TauP,
    TauS,
    Temperature,
    settings_from,
)
from fpcli.cli.progress import Reporter
from fpcli.cli.render import answer_summary


def answer_video(model: LazyModel, video: Path, question: str, settings: RunSettings, reporter: Reporter
                 ) -> dict[str, Any]:
    """Sample (before the model loads: a bad video fails fast), encode, prune and answer; the result as JSON."""
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
    return result.to_dict()


def show_answer(out: Console, result: dict[str, Any]) -> None:
    print(result["answer"], flush=True)
    out.print()
    out.print(answer_summary(result))


def ask(
    ctx: typer.Context,
    videos: Annotated[
        Optional[list[Path]],
        typer.Argument(metavar="VIDEO", help="Video files, or folders of videos.", show_default=False),
    ] = None,
    question: Annotated[
        Optional[str],
        typer.Argument(metavar="QUESTION", help="The question, asked about each video.", show_default=False),
    ] = None,
    model: Model = None,
    layout: LayoutOpt = None,
    device: Device = "auto",
    dtype: DTypeOpt = DType.auto,
    attn: Attn = Attention.sdpa,
    ratio: Ratio = None,
    method: Method = "forestprune",
    frames: Frames = None,
    fps: Fps = None,
    tau_s: TauS = None,
    tau_p: TauP = None,
    max_new_tokens: MaxNewTokens = 128,
    temperature: Temperature = 0.0,
    seed: Seed = 0,
    config: Config = None,
    json_output: Json = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Answer QUESTION about each VIDEO (files or folders), pruning visual tokens before the LLM.

    Prints each answer as it comes, then tokens before -> after, per-frame retention, timings and memory.

    With --json: one JSON object per video on stdout (JSON lines for several videos), nothing else.
    """
    if not videos or question is None:  # click fills QUESTION first: `ask clip.mp4` lacks the question
        missing = "QUESTION" if question is not None and Path(question).exists() else "VIDEO"
        raise errors.UsageError(f"Missing argument '{missing}'.", ctx=ctx)
    settings, model_settings = settings_from(ctx)
    paths = expand_videos(videos)
    with Reporter(quiet) as reporter:
        llm = LazyModel(model_settings, reporter)

        def answer(path: Path) -> dict[str, Any]:
            return answer_video(llm, path, question, settings, reporter)

        each_video(paths, answer, show_answer, json_output, errors.debug_enabled(ctx.meta))
