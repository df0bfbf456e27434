"""`forestprune ask VIDEO... QUESTION`: answer a question about one or more videos with one loaded model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from fpcli.cli import errors
from fpcli.cli.config import config_origin
from fpcli.cli.options import (
    Budget,
    CacheMaxSize,
    DEFAULT_DEVICE,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_METHOD,
    DEFAULT_SEED,
    DEFAULT_TEMPERATURE,
    Attention,
    Attn,
    Compare,
    Config,
    Debug,
    Device,
    DType,
    DTypeOpt,
    Fps,
    Frames,
    Json,
    LayoutOpt,
    MaxPixels,
    MaxNewTokens,
    Method,
    Model,
    NoCache,
    Opt,
    Quiet,
    Ratio,
    Seed,
    TauP,
    TauS,
    Temperature,
    Viz,
    VizTrees,
)
from fpcli.cli.progress import Reporter
from fpcli.cli.render import answer_summary, answers_table
from fpcli.cli.runner import each_video, expand_videos, feature_cache
from fpcli.cli.settings import run_settings
from fpcli.cli.startup import with_startup
from fpcli.cli.tables import print_whole
from fpcli.run.answering import answer_video, compare_video
from fpcli.run.settings import ModelSettings
from fpcli.run.source import LazyModel


def stamped(record: dict[str, Any]) -> dict[str, Any]:
    """A result with the process's start-up in its time line (fpcli.cli.startup: on the first result only)."""
    return {**record, "timing_s": with_startup(record["timing_s"])}


def show_answer(out: Console, result: dict[str, Any]) -> None:
    print(result["answer"], flush=True)
    out.print()
    out.print(answer_summary(result, out.width))


def show_comparison(out: Console, results: list[dict[str, Any]]) -> None:
    print_whole(out, answers_table(results))


def _names_a_file(text: str) -> bool:
    """Whether `text` is the path of an existing file; a question too long to be a path (ENAMETOOLONG) is not."""
    try:
        return Path(text).exists()
    except OSError:
        return False


def check_question(ctx: typer.Context, videos: Optional[list[Path]], question: Optional[str]) -> tuple[list[Path], str]:
    """VIDEO... and QUESTION as given, or a usage error saying which is missing.

    click fills QUESTION with the last argument, so a forgotten question leaves a video there (`ask a.mp4 b.mp4`):
    a QUESTION that names an existing file, or is blank, is the missing question."""
    missing_question = question is None or not question.strip() or _names_a_file(question)
    if not videos:
        raise errors.UsageError(f"Missing argument '{'QUESTION' if missing_question else 'VIDEO'}'.", ctx=ctx)
    if missing_question:
        given = "" if question is None else f" ({question!r} is a file, not a question)" if question.strip() else \
            " (it is blank)"
        raise errors.UsageError(f"Missing argument 'QUESTION'{given}.", ctx=ctx)
    if _looks_like_a_video(question):
        raise errors.usage_error(f"no such file {question!r}: did you forget the question?",
                                 hint="the last argument is the QUESTION, asked about every VIDEO before it")
    return videos, question


def _looks_like_a_video(text: str) -> bool:
    """A video's extension, or a path separator and no spaces: a question would not look like that (`ask a.mp4
    missing.mp4` forgot the question and mistyped the second video)."""
    from fpcli.video import VIDEO_EXTENSIONS

    stripped = text.strip()
    return Path(stripped).suffix.lower() in VIDEO_EXTENSIONS or ("/" in stripped and " " not in stripped)


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
    device: Device = DEFAULT_DEVICE,
    dtype: DTypeOpt = DType.auto,
    attn: Attn = Attention.sdpa,
    ratio: Ratio = None,
    budget: Budget = None,
    method: Method = DEFAULT_METHOD,
    compare: Compare = None,
    frames: Frames = None,
    fps: Fps = None,
    max_pixels: MaxPixels = None,
    tau_s: TauS = None,
    tau_p: TauP = None,
    opt: Opt = None,
    max_new_tokens: MaxNewTokens = DEFAULT_MAX_NEW_TOKENS,
    temperature: Temperature = DEFAULT_TEMPERATURE,
    seed: Seed = DEFAULT_SEED,
    viz: Viz = None,
    viz_trees: VizTrees = None,
    no_cache: NoCache = False,
    cache_max_size: CacheMaxSize = None,
    config: Config = None,
    json_output: Json = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Answer QUESTION about each VIDEO (files or folders), pruning visual tokens before the LLM.

    Prints each answer as it comes, then tokens before -> after, per-frame retention, timings and memory.
    With --compare: every method answers on one decoding and encoding of each video, in one table (visual tokens
    the LLM's layers ran on, pruning, encode and prefill time, prefill TFLOPs, peak memory, answer).

    Asking again about a video (same frames, model, dtype) reads its features from the feature cache: no decoding.

    With --viz FILE: a picture of what each method kept (a strip per method over the sampled frames); FILE.html
    writes a self-contained page with the methods' table above it.

    With --json: one JSON object per video on stdout (JSON lines for several videos; with --compare one per
    method), nothing else.
    """
    videos, question = check_question(ctx, videos, question)
    settings = run_settings(ratio=ratio, method=method, frames=frames, fps=fps, max_pixels=max_pixels, tau_s=tau_s,
                            tau_p=tau_p, opt=opt, seed=seed, max_new_tokens=max_new_tokens, temperature=temperature,
                            compare=compare, budget=budget, config=config_origin(ctx))
    if viz is not None or viz_trees is not None:
        from fpcli.cli.viz import check

        check(viz, viz_trees, settings.compared() if settings.compare else [settings.method])
    cache = feature_cache(no_cache, cache_max_size)
    paths = expand_videos(videos)
    with Reporter(quiet) as reporter:
        llm = LazyModel(ModelSettings.of(model, layout, device, dtype, attn), reporter, cache=cache,
                        methods=settings.method_settings(), max_pixels=settings.max_pixels)
        llm.check_methods()

        def answer(path: Path) -> dict[str, Any] | list[dict[str, Any]]:
            if viz is not None:
                from fpcli.cli.viz import answer_with_viz, viz_path

                picture = viz_path(viz, path, len(paths) > 1)
                result = answer_with_viz(llm, path, question, settings, reporter, picture, viz_trees)
            elif settings.compare:
                result = compare_video(llm, path, question, settings, reporter)
            else:
                result = answer_video(llm, path, question, settings)
            return [stamped(one) for one in result] if isinstance(result, list) else stamped(result)

        show = show_comparison if settings.compare else show_answer
        each_video(paths, answer, show, json_output, errors.debug_enabled(ctx.meta), reporter)
