"""`forestprune stats VIDEO...`: what pruning does to a video, without generating an answer.

The work is fpcli.run's `inspect_video`: the clip's features (feature cache, or decode and encode once) and
`VideoLLM.inspect` (prune with --method and every --compare method on those same features); this command calls it
and renders the StatsResult (and the --viz picture).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from fpcli.cli import errors
from fpcli.cli.config import config_origin
from fpcli.cli.options import (
    Budget,
    CacheMaxSize,
    DEFAULT_DEVICE,
    DEFAULT_METHOD,
    DEFAULT_SEED,
    Compare,
    Config,
    Debug,
    Device,
    DType,
    DTypeOpt,
    Fps,
    Frames,
    FramesTable,
    Json,
    LayoutOpt,
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
    Viz,
    VizTrees,
)
from fpcli.cli.progress import Reporter
from fpcli.cli.render import stats_summary
from fpcli.cli.runner import each_video, expand_videos, feature_cache
from fpcli.cli.settings import run_settings
from fpcli.cli.startup import with_startup
from fpcli.cli.tables import print_whole
from fpcli.model.methods import in_llm_stage
from fpcli.run.answering import inspect_video
from fpcli.run.settings import ModelSettings, RunSettings
from fpcli.run.source import LazyModel, decode

if TYPE_CHECKING:
    from fpcli.video import VideoClip


def video_stats(model: LazyModel, video: Path, settings: RunSettings, reporter: Reporter, viz: Optional[Path],
                viz_trees: Optional[int] = None) -> dict[str, Any]:
    """The clip's features (cache, or decoding before the model loads), inspected; the result in its JSON form
    (and the --viz picture, whose frames a cache hit decodes for it: the picture shows pixels)."""
    decoded: list[VideoClip] = []
    result = inspect_video(model, video, settings, decoded)
    if viz is not None:
        from fpcli.cli.viz import write_stats

        clip = decoded[0] if decoded else decode(video, settings, model, reporter)[0]
        write_stats(viz, clip, result, model.get().temporal_patch_size, viz_trees)
        reporter.message(f"Wrote {viz}")
    out = result.to_dict()
    return {**out, "timing_s": with_startup(out["timing_s"])}


def stats(
    ctx: typer.Context,
    videos: Annotated[
        list[Path], typer.Argument(metavar="VIDEO", help="Video files, or folders of videos.", show_default=False)
    ],
    model: Model = None,
    layout: LayoutOpt = None,
    device: Device = DEFAULT_DEVICE,
    dtype: DTypeOpt = DType.auto,
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
    seed: Seed = DEFAULT_SEED,
    viz: Viz = None,
    viz_trees: VizTrees = None,
    frames_table: FramesTable = False,
    no_cache: NoCache = False,
    cache_max_size: CacheMaxSize = None,
    config: Config = None,
    json_output: Json = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Show what pruning keeps of each VIDEO: per-frame retention, trees and roots, tokens, timings.

    Loads only the vision tower and projector (no LLM weights) and generates nothing.
    """
    settings = run_settings(ratio=ratio, method=method, frames=frames, fps=fps, max_pixels=max_pixels, tau_s=tau_s,
                            tau_p=tau_p, opt=opt, seed=seed, compare=compare, budget=budget,
                            config=config_origin(ctx))
    inside = [name for name in settings.methods() if in_llm_stage(name) is not None]
    if inside:
        raise errors.usage_error(f"{inside[0]} prunes inside the LLM, which stats does not run",
                                 hint=f"compare it with `forestprune ask VIDEO QUESTION --compare {inside[0]}`")
    if viz is not None or viz_trees is not None:
        from fpcli.cli.viz import check

        check(viz, viz_trees, settings.methods())
    cache = feature_cache(no_cache, cache_max_size)
    paths = expand_videos(videos)
    with Reporter(quiet) as reporter:
        llm = LazyModel(ModelSettings.of(model, layout, device, dtype), reporter, vision_only=True, cache=cache,
                        methods=settings.method_settings(), max_pixels=settings.max_pixels)
        llm.check_methods()

        def measure(path: Path) -> dict[str, Any]:
            picture = None
            if viz is not None:
                from fpcli.cli.viz import viz_path

                picture = viz_path(viz, path, len(paths) > 1)
            return video_stats(llm, path, settings, reporter, picture, viz_trees)

        each_video(paths, measure, lambda out, result: print_whole(out, stats_summary(result, out.width, frames_table)),
                   json_output, errors.debug_enabled(ctx.meta), reporter)
