"""Declarations of the options the commands share: names, help texts, defaults and ranges, each in one place.

Commands import these Annotated names (Model, Ratio, Method, Frames, Fps, ...) and build their settings from the
typed parameters (fpcli.cli.settings). Names, defaults and ranges come from where they are defined: method names
and option specs from the method catalogue (fpcli.model.methods), profile names and layouts from the model's profiles (both import
no torch, so `--help` stays fast); the sampling and generation bounds are the constants below.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from fpcli.cli.config import load_config
from fpcli.cli.errors import set_debug
from fpcli.eval.benches import BENCHES
from fpcli.eval.protocols import PROTOCOLS
from fpcli.eval.run import DEFAULT_METHODS, DEFAULT_PROTOCOL, DEFAULT_RATIOS
from fpcli.model import ATTENTION_NAMES, DTYPE_NAMES, LAYOUTS, PROFILES
from fpcli.model.cpu_dtype import AUTO_HELP
from fpcli.model.methods import is_in_llm, is_two_stage, method_names, options_of
from fpcli.model.profiles import MAX_PIXELS_CAP, QWEN_MAX_FRAMES
from fpcli.model.sampling import MAX_FRAMES, RATE_LAYOUTS
from fpcli.prune.registry import check_ratio
from fpcli.run.settings import (  # noqa: F401  the defaults the commands' declarations show
    CPU_DEFAULT,
    DEFAULT_DEVICE,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_METHOD,
    DEFAULT_RATIO,
    DEFAULT_SEED,
    DEFAULT_TEMPERATURE,
    GPU_DEFAULT,
    MIN_BUDGET,
    MIN_NEW_TOKENS,
    MIN_TEMPERATURE,
)
from fpcli.viz import MAX_TREES, REPORT_SUFFIX, SUFFIXES as VIZ_SUFFIXES

PRUNE_PANEL = "Pruning"
MODEL_PANEL = "Model"
GENERATION_PANEL = "Generation"
OUTPUT_PANEL = "Output"
CACHE_PANEL = "Feature cache"

Layout = Enum("Layout", {name: name for name in LAYOUTS}, type=str)  # type: ignore[misc]


DType = Enum("DType", {name: name for name in ("auto", *DTYPE_NAMES)}, type=str)  # type: ignore[misc]
Attention = Enum("Attention", {name: name for name in ATTENTION_NAMES}, type=str)  # type: ignore[misc]


def _check_ratio(value: Optional[float]) -> Optional[float]:
    """The pruning registry's rule, at parse time."""
    try:
        return None if value is None else check_ratio(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{exc} (the fraction of visual tokens to drop)") from None


def _check_fps(value: Optional[float]) -> Optional[float]:
    if value is not None and not value > 0:
        raise typer.BadParameter(f"{value} is not a positive rate (frames per second)")
    return value


def _check_device(value: str) -> str:
    if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise typer.BadParameter(f"{value!r} is not auto, cpu, cuda or cuda:N")


def _check_viz(value: Optional[Path]) -> Optional[Path]:
    """A picture or report suffix, in a folder that exists (or can be made) and is writable."""
    if value is None:
        return None
    if value.suffix.lower() not in VIZ_SUFFIXES:
        pictures = ", ".join(suffix for suffix in VIZ_SUFFIXES if suffix != REPORT_SUFFIX)
        raise typer.BadParameter(f"{value} must end in {pictures} (a picture) or {REPORT_SUFFIX} (the report page)")
    folder = value.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the folders missing on the way are made when the file is written
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"cannot write {value}: {folder} is not a writable folder")
    return value


def _check_size(value: Optional[str]) -> Optional[str]:
    """--cache-max-size by the feature cache's own parser (imported only when the option is given)."""
    if value is None:
        return None
    from fpcli.errors import InputError
    from fpcli.model.feature_cache import parse_size

    try:
        parse_size(value)
    except InputError as exc:
        raise typer.BadParameter(exc.what) from None
    return value


def _forestprune_option(name: str):
    """--tau-s / --tau-p: forestprune's option, its help and range check from the registry's spec."""
    spec = options_of("forestprune")[name]

    def check(value: Optional[float]) -> Optional[float]:
        try:
            return None if value is None else float(spec.check(value))
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    flag = "--" + name.replace("_", "-")
    return typer.Option(flag, callback=check, rich_help_panel=PRUNE_PANEL, show_default=False,
                        help=f"ForestPrune: {spec.help}, {spec.describe()}.")


Model = Annotated[
    Optional[str],
    typer.Option(
        "--model", "-m", rich_help_panel=MODEL_PANEL,
        help=f"Profile ({', '.join(PROFILES)}), Hugging Face id or checkpoint folder. Default: {GPU_DEFAULT} "
        f"with CUDA, {CPU_DEFAULT} on CPU.",
    ),
]
LayoutOpt = Annotated[
    Optional[Layout],
    typer.Option("--layout", rich_help_panel=MODEL_PANEL,
                 help="Token layout of a checkpoint given by path or id (default: the profile's, the checkpoint's "
                 "forestprune.json, Qwen-VL from config.json, else onevision)."),
]
Device = Annotated[
    str,
    typer.Option("--device", callback=_check_device, rich_help_panel=MODEL_PANEL, help="auto, cpu, cuda or cuda:N."),
]
DTypeOpt = Annotated[DType, typer.Option("--dtype", rich_help_panel=MODEL_PANEL, help=AUTO_HELP)]
Attn = Annotated[Attention, typer.Option("--attn", rich_help_panel=MODEL_PANEL, help="Attention implementation.")]
Ratio = Annotated[
    Optional[float],
    typer.Option("--ratio", "-r", callback=_check_ratio, rich_help_panel=PRUNE_PANEL, show_default=False,
                 help=f"Fraction of visual tokens to drop, in [0, 1) (default {DEFAULT_RATIO}; 0 with --method none)."),
]
Budget = Annotated[
    Optional[int],
    typer.Option("--budget", min=MIN_BUDGET, rich_help_panel=PRUNE_PANEL, show_default=False,
                 help="Visual tokens to keep in total, whatever the frame count, instead of --ratio (the ratio "
                 "reported is then 1 - budget / visual tokens)."),
]
Method = Annotated[
    str,
    typer.Option("--method", rich_help_panel=PRUNE_PANEL,
                 help=f"'forestprune methods' lists each with its options: {', '.join(method_names())}, or a "
                 "method registered in Python; "
                 f"{', '.join(name for name in method_names() if is_in_llm(name))} prune inside the LLM, "
                 f"{', '.join(name for name in method_names() if is_two_stage(name))} before it and inside it "
                 "(K / llm_keep tokens enter, K from their layer on). At --ratio r every method ends with "
                 "K = max(1, round((1 - r) * N)) of the N visual tokens in the LLM; docs/methods.md says how each "
                 "maps its authors' own ratio."),
]
TauS = Annotated[Optional[float], _forestprune_option("tau_s")]
TauP = Annotated[Optional[float], _forestprune_option("tau_p")]
Opt = Annotated[
    Optional[list[str]],
    typer.Option("--opt", metavar="NAME=VALUE", rich_help_panel=PRUNE_PANEL, show_default=False,
                 help="An option of the pruning method (any registered method), typed and checked by its "
                 "declaration; repeatable. E.g. --opt node_ratio=0.25; 'forestprune methods' lists every option."),
]
Compare = Annotated[
    Optional[str],
    typer.Option("--compare", rich_help_panel=PRUNE_PANEL, show_default=False,
                 help=f"More methods to run on the same features, comma-separated, from {', '.join(method_names())}."),
]
_RATES = "; ".join(  # "qwen2.5-vl/qwen3-vl 2 fps, at least 4": each rate rule once, with its layouts
    f"{'/'.join(name for name, same in RATE_LAYOUTS.items() if same == rule)} {rule[0]:g} fps, at least {rule[1]}"
    for rule in dict.fromkeys(RATE_LAYOUTS.values())
)
Frames = Annotated[
    Optional[int],
    typer.Option("--frames", "-f", min=1, max=MAX_FRAMES, rich_help_panel=PRUNE_PANEL,
                 help=f"Frames sampled uniformly from the video, 1 to {MAX_FRAMES} (default: the model's: 32 or 64 "
                 f"frames; {_RATES})."),
]
Fps = Annotated[
    Optional[float],
    typer.Option("--fps", callback=_check_fps, rich_help_panel=PRUNE_PANEL, show_default=False,
                 help=f"Sample a frame every 1/FPS seconds instead; --frames is then the cap (default {MAX_FRAMES}, "
                 f"Qwen-VL {QWEN_MAX_FRAMES})."),
]
MaxPixels = Annotated[
    Optional[int],
    typer.Option("--max-pixels", min=1, max=MAX_PIXELS_CAP, rich_help_panel=PRUNE_PANEL, show_default=False,
                 help=f"Qwen-VL: most pixels per frame after resizing (default: the checkpoint's video budget, "
                 f"e.g. 200704 for 448x448; {MAX_PIXELS_CAP} at most)."),
]
MaxNewTokens = Annotated[int, typer.Option("--max-new-tokens", min=MIN_NEW_TOKENS, rich_help_panel=GENERATION_PANEL,
                                           help="Longest answer, in tokens.")]
Temperature = Annotated[float, typer.Option("--temperature", min=MIN_TEMPERATURE, rich_help_panel=GENERATION_PANEL,
                                            help="Sampling temperature; 0 = greedy.")]
Seed = Annotated[int, typer.Option("--seed", rich_help_panel=GENERATION_PANEL,
                                   help="Seed for sampling and for a method that takes a seed (random).")]
Config = Annotated[
    Optional[Path],
    typer.Option("--config", is_eager=True, callback=load_config, dir_okay=False, rich_help_panel=OUTPUT_PANEL,
                 help="YAML file with defaults for any option; flags on the command line win."),
]
Json = Annotated[bool, typer.Option("--json", rich_help_panel=OUTPUT_PANEL,
                                    help="One JSON object per video on stdout, nothing else.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", rich_help_panel=OUTPUT_PANEL,
                                     help="No progress bars or messages on stderr (errors still show).")]
Viz = Annotated[
    Optional[Path],
    typer.Option("--viz", dir_okay=False, callback=_check_viz, rich_help_panel=OUTPUT_PANEL, show_default=False,
                 help="Write a picture (.png, .jpg, .jpeg, .webp) of what each method (--method, --compare) keeps: "
                 "a strip per method over the sampled frames, kept patches bright, dropped ones dimmed, merged ones "
                 "outlined, and the retention per frame; FILE.html: a self-contained page with the methods' table "
                 "above the pictures."),
]
VizTrees = Annotated[
    Optional[int],
    typer.Option("--viz-trees", min=1, max=MAX_TREES, rich_help_panel=OUTPUT_PANEL, show_default=False,
                 metavar="N", help=f"With --viz: also draw forestprune's N deepest trees (1 to {MAX_TREES}) on the "
                 "frames they span (the paper's Figure 5a)."),
]
FramesTable = Annotated[bool, typer.Option("--frames-table", rich_help_panel=OUTPUT_PANEL,
                                           help="Show every frame's row (time, kept, bar) instead of the compact strip.")]
NoCache = Annotated[
    bool,
    typer.Option("--no-cache", rich_help_panel=CACHE_PANEL,
                 help="Neither read nor write the feature cache (also FORESTPRUNE_NO_CACHE=1): decode and encode."),
]
CacheMaxSize = Annotated[
    Optional[str],
    typer.Option("--cache-max-size", metavar="SIZE", callback=_check_size, rich_help_panel=CACHE_PANEL,
                 show_default=False,
                 help="Cap of the feature cache, e.g. 500MB or 20GB; least recently used clips go first "
                 "(default FORESTPRUNE_CACHE_MAX_SIZE, else 5GB)."),
]
ForceNew = Annotated[bool, typer.Option(
    "--force-new", rich_help_panel=OUTPUT_PANEL,
    help="Start --out over (its earlier results are removed) instead of resuming it; resuming is refused when a "
    "setting that changes results differs.")]
# Not passed to the command: its callback records it in ctx.meta, where error handling looks (errors.debug_enabled).
Debug = Annotated[bool, typer.Option("--debug", callback=set_debug, expose_value=False, rich_help_panel=OUTPUT_PANEL,
                                     help="Show the traceback of errors, and the libraries' own warnings.")]

# `forestprune eval`: defaults are the protocol's (fpcli.eval.protocols) and the run's (fpcli.eval.run).
EVAL_PANEL = "Evaluation"
ProtocolName = Enum("ProtocolName", {name: name for name in PROTOCOLS}, type=str)  # type: ignore[misc]


def _check_plot(value: Optional[Path]) -> Optional[Path]:
    if value is not None and value.suffix.lower() != ".png":
        raise typer.BadParameter(f"{value} must end in .png")
    return value


EvalArgs = Annotated[list[str], typer.Argument(
    metavar="BENCH | RUN_DIR...", show_default=False,
    help=f"The benchmark: {', '.join(BENCHES)}; with --merge, the run directories.")]
EvalData = Annotated[Optional[Path], typer.Option(
    "--data", "-d", rich_help_panel=EVAL_PANEL, show_default=False,
    help="The benchmark as downloaded from the hub, videos unpacked under it (jsonl: the .jsonl file).")]
EvalProtocolOpt = Annotated[ProtocolName, typer.Option(
    "--protocol", rich_help_panel=EVAL_PANEL,
    help="paper: the ForestPrune authors' scripts; lmms-eval: that project's tasks (docs/eval.md).")]
EvalMethods = Annotated[Optional[str], typer.Option(
    "--methods", rich_help_panel=EVAL_PANEL, show_default=False,
    help=f"Methods, comma-separated; none (the reference) runs once, at ratio 0 "
    f"(default {','.join(DEFAULT_METHODS)}).")]
EvalRatios = Annotated[Optional[str], typer.Option(
    "--ratios", rich_help_panel=EVAL_PANEL, show_default=False,
    help=f"Pruning ratios, comma-separated (default {','.join(f'{r:g}' for r in DEFAULT_RATIOS)}).")]
EvalBudgets = Annotated[Optional[str], typer.Option(
    "--budgets", rich_help_panel=EVAL_PANEL, show_default=False,
    help="Visual tokens to keep, comma-separated, instead of --ratios: the same count whatever the frame count "
    "(e.g. --frames 64,128,256,512 --budgets 10816: the paper's Table 2).")]
EvalFrames = Annotated[Optional[str], typer.Option(
    "--frames", "-f", rich_help_panel=EVAL_PANEL, show_default=False,
    help=f"Frames per video (1..{MAX_FRAMES}) instead of the protocol's (its index rule and time bounds stay); "
    "several, comma-separated, are a frames sweep: one column per frame count, none at the first.")]
EvalMaxNewTokens = Annotated[Optional[int], typer.Option(
    "--max-new-tokens", min=MIN_NEW_TOKENS, rich_help_panel=EVAL_PANEL, show_default=False,
    help="Longest answer instead of the protocol's (greedy either way).")]
EvalLimit = Annotated[Optional[int], typer.Option(
    "--limit", min=1, rich_help_panel=EVAL_PANEL, show_default=False, help="Only the first N questions.")]
EvalShard = Annotated[Optional[str], typer.Option(
    "--shard", metavar="I/N", rich_help_panel=EVAL_PANEL, show_default=False,
    help="Run shard I of N (split by video), each into its own --out; combine them with --merge.")]
EvalOut = Annotated[Optional[Path], typer.Option(
    "--out", "-o", file_okay=False, rich_help_panel=OUTPUT_PANEL, show_default=False,
    help="Run directory (predictions.jsonl, run.json, summary.json); re-running resumes. With --merge: "
    "where the merged summary.json goes (optional).")]
EvalMerge = Annotated[bool, typer.Option(
    "--merge", rich_help_panel=OUTPUT_PANEL, help="Combine the run directories given as arguments into one summary.")]
EvalJson = Annotated[bool, typer.Option("--json", rich_help_panel=OUTPUT_PANEL,
                                        help="The summary as one JSON object on stdout, nothing else.")]
EvalPlot = Annotated[Optional[Path], typer.Option(
    "--plot", dir_okay=False, callback=_check_plot, rich_help_panel=OUTPUT_PANEL, show_default=False,
    help="Write a PNG of accuracy against ratio, one line per method.")]
