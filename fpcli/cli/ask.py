"""`forestprune ask VIDEO... QUESTION`: answer a question about one or more videos with one loaded model."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.rule import Rule

from fpcli.cli import errors
from fpcli.cli.loading import expand_videos, load
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
    ModelSettings,
    Quiet,
    Ratio,
    RunSettings,
    Seed,
    TauP,
    TauS,
    Temperature,
    validate,
)
from fpcli.cli.progress import Reporter
from fpcli.cli.render import answer_summary

if TYPE_CHECKING:
    from fpcli.model import VideoLLM


def answer_video(llm: VideoLLM, video: Path, question: str, settings: RunSettings, reporter: Reporter
                 ) -> dict[str, Any]:
    """Sample, encode, prune and answer for one video; the result in its JSON form."""
    from fpcli.model import GenerationConfig
    from fpcli.video import sample_frames

    start = time.perf_counter()
    clip = sample_frames(video, **settings.sampling(llm.default_frames), progress=reporter.callback)
    decode_s = time.perf_counter() - start
    result = llm.answer(
        clip,
        question,
        ratio=settings.ratio,
        method=settings.method,
        prune_options=settings.prune_options(),
        generation=GenerationConfig(
            max_new_tokens=settings.max_new_tokens, temperature=settings.temperature, seed=settings.seed
        ),
        decode_s=decode_s,
        progress=reporter.callback,
    )
    return result.to_dict()


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
    ratio: Ratio = 0.9,
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
    settings = RunSettings(
        ratio=ratio, method=method, frames=frames, fps=fps, tau_s=tau_s, tau_p=tau_p,
        max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
    )
    validate(settings)
    paths = expand_videos(videos)
    model_settings = ModelSettings(model, layout and layout.value, device, dtype.value, attn.value)
    out = Console(highlight=False, soft_wrap=True)
    failed = 0
    with Reporter(quiet) as reporter:
        llm = load(model_settings, reporter)
        for path in paths:
            try:
                result = answer_video(llm, path, question, settings, reporter)
            except Exception as exc:  # one bad video of several must not stop the others
                failed += 1
                errors.report(exc, errors.debug_enabled(ctx.meta))
                continue
            if json_output:
                print(json.dumps(result, ensure_ascii=False), flush=True)
                continue
            if len(paths) > 1:
                out.print(Rule(str(path), align="left"))
            print(result["answer"], flush=True)
            out.print()
            out.print(answer_summary(result))
    if failed:
        raise typer.Exit(errors.EXIT_FAILURE)
