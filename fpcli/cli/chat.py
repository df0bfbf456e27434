"""`forestprune chat VIDEO`: many questions about one video, paying for the model, the clip and its prefix once.

The model loads once, the clip's features come once (the feature cache, or decoding and the vision tower), they are
pruned once and the prompt prefix (system prompt + visual tokens) is prefilled once: every question then costs its
own prefill and generation only, with the same answer, token for token, as a separate `ask` (greedy). The input loop
is fpcli.cli.chat_loop (interactive with line editing, or one question per line of a pipe).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from fpcli.cli import errors
from fpcli.cli.chat_loop import run_chat
from fpcli.cli.chat_ready import ready_line
from fpcli.cli.config import config_origin
from fpcli.cli.options import (
    DEFAULT_DEVICE,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_METHOD,
    DEFAULT_SEED,
    DEFAULT_TEMPERATURE,
    GENERATION_PANEL,
    Attention,
    Attn,
    Budget,
    CacheMaxSize,
    Config,
    Debug,
    Device,
    DType,
    DTypeOpt,
    Fps,
    Frames,
    LayoutOpt,
    MaxNewTokens,
    MaxPixels,
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
)
from fpcli.cli.progress import Reporter
from fpcli.cli.runner import feature_cache, warn
from fpcli.cli.settings import run_settings
from fpcli.errors import ForestpruneError
from fpcli.model.method_catalogue import method_options
from fpcli.run.answering import ask_in_chat, open_chat
from fpcli.run.settings import ModelSettings
from fpcli.run.source import LazyModel

HISTORY_FILE = "chat_history"  # readline's input history, under the forestprune cache directory


def chat(
    ctx: typer.Context,
    video: Annotated[Path, typer.Argument(metavar="VIDEO", help="The video file to ask about.", show_default=False,
                                          dir_okay=False)],
    model: Model = None,
    layout: LayoutOpt = None,
    device: Device = DEFAULT_DEVICE,
    dtype: DTypeOpt = DType.auto,
    attn: Attn = Attention.sdpa,
    ratio: Ratio = None,
    budget: Budget = None,
    method: Method = DEFAULT_METHOD,
    frames: Frames = None,
    fps: Fps = None,
    max_pixels: MaxPixels = None,
    tau_s: TauS = None,
    tau_p: TauP = None,
    opt: Opt = None,
    max_new_tokens: MaxNewTokens = DEFAULT_MAX_NEW_TOKENS,
    temperature: Temperature = DEFAULT_TEMPERATURE,
    seed: Seed = DEFAULT_SEED,
    history: Annotated[bool, typer.Option("--history", rich_help_panel=GENERATION_PANEL,
                                          help="Keep earlier questions and answers in the conversation (default: "
                                          "each question on its own, as `ask` answers it).")] = False,
    no_cache: NoCache = False,
    cache_max_size: CacheMaxSize = None,
    config: Config = None,
    json_output: Annotated[bool, typer.Option("--json", rich_help_panel="Output",
                                              help="One JSON object per question on stdout (the `ask --json` "
                                              "schema), nothing else.")] = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Answer questions about VIDEO, one after another, from the terminal or one per line of a pipe.

    The model, the clip's features, pruning and the visual prefix once; then each question its own prefill only.

    Interactive: line editing and history; Ctrl-D or /exit ends, Ctrl-C cancels the answer being written.

    Piped: one answer per line of input, e.g. `cat questions.txt | forestprune chat clip.mp4 --json`.

    Exit code 0, or 1 when a question failed (the chat goes on after it).
    """
    settings = run_settings(ratio=ratio, method=method, frames=frames, fps=fps, max_pixels=max_pixels, tau_s=tau_s,
                            tau_p=tau_p, opt=opt, seed=seed, max_new_tokens=max_new_tokens, temperature=temperature,
                            budget=budget, config=config_origin(ctx))
    cache = feature_cache(no_cache, cache_max_size)
    if not video.exists():
        raise errors.usage_error("no such file", video)
    debugging = errors.debug_enabled(ctx.meta)
    with Reporter(quiet) as reporter:
        lazy = LazyModel(ModelSettings.of(model, layout, device, dtype, attn), reporter, cache=cache,
                         methods=settings.method_settings(), max_pixels=settings.max_pixels)
        lazy.check_methods()
        session = open_chat(lazy, video, settings, history)
        reporter.message(ready_line(video, session))
    failed = 0

    def answer(question: str) -> None:
        nonlocal failed
        try:
            result = ask_in_chat(lazy, session, question, settings)
        except ForestpruneError as exc:  # e.g. too long for the context: this question fails, the chat goes on
            failed += 1
            errors.report(exc, debugging)
            return
        record: dict[str, Any] = {**result.to_dict(),
                                  "method_options": method_options(settings.method, settings.prune_options())}
        if session.questions == 1:
            warn(record)  # the clip's warnings, said once
        print(json.dumps(record, ensure_ascii=False) if json_output else result.answer, flush=True)

    from fpcli.model.cache_dir import forestprune_cache_dir

    run_chat(answer, history_file=forestprune_cache_dir() / HISTORY_FILE)
    if failed:
        raise typer.Exit(errors.EXIT_FAILURE)
