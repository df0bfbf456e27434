"""`forestprune stats VIDEO...`: what pruning does to a video, without generating an answer.

The work is the model layer's (`VideoLLM.inspect`: encode once, prune with --method and every --compare method on
those same features); this command decodes, calls it, adds the load time once, and renders the StatsResult.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from fpcli.cli import errors
from fpcli.cli.options import (
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
    Method,
    Model,
    Opt,
    Quiet,
    Ratio,
    Seed,
    TauP,
    TauS,
    Viz,
)
from fpcli.cli.progress import Reporter
from fpcli.cli.render import stats_summary
from fpcli.cli.runner import LazyModel, decode, each_video, expand_videos
from fpcli.cli.settings import ModelSettings, RunSettings, run_settings


def video_stats(model: LazyModel, video: Path, settings: RunSettings, reporter: Reporter, viz: Optional[Path]
                ) -> dict[str, Any]:
    """Sample (before the model loads), inspect; the result in its JSON form (and the --viz picture)."""
    clip, decode_s = decode(video, settings, model, reporter)
    result = model.get().inspect(
        clip,
        ratio=settings.prune_ratio,
        method=settings.method,
        options=settings.prune_options(),
        compare={name: settings.prune_options(name) for name in settings.methods()[1:]},
        decode_s=decode_s,
        progress=reporter.callback,
    )
    result.timing_s.load = model.load_s_once()
    if viz is not None:
        from fpcli.cli.viz import write_viz

        title = (f"{Path(clip.path).name} | {result.method}, ratio {result.ratio:g} | "
                 f"{result.main.visual_after}/{result.visual_before} tokens kept")
        write_viz(viz, clip.frames, result.keep.cpu().numpy(), result.grid, clip.timestamps, title)
        reporter.message(f"Wrote {viz}")
    return result.to_dict()


def viz_path(viz: Optional[Path], video: Path, several: bool) -> Optional[Path]:
    """--viz out.png as given for one video; out-<video stem>.png for each of several."""
    if viz is None or not several:
        return viz
    return viz.with_name(f"{viz.stem}-{video.stem}{viz.suffix}")


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
    method: Method = DEFAULT_METHOD,
    compare: Compare = None,
    frames: Frames = None,
    fps: Fps = None,
    tau_s: TauS = None,
    tau_p: TauP = None,
    opt: Opt = None,
    seed: Seed = DEFAULT_SEED,
    viz: Viz = None,
    frames_table: FramesTable = False,
    config: Config = None,
    json_output: Json = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Show what pruning keeps of each VIDEO: per-frame retention, trees and roots, tokens, timings.

    Loads only the vision tower and projector (no LLM weights) and generates nothing.
    """
    settings = run_settings(ratio=ratio, method=method, frames=frames, fps=fps, tau_s=tau_s, tau_p=tau_p, opt=opt,
                            seed=seed, compare=compare)
    paths = expand_videos(videos)
    with Reporter(quiet) as reporter:
        llm = LazyModel(ModelSettings.of(model, layout, device, dtype), reporter, vision_only=True)

        def measure(path: Path) -> dict[str, Any]:
            return video_stats(llm, path, settings, reporter, viz_path(viz, path, len(paths) > 1))

        each_video(paths, measure, lambda out, result: out.print(stats_summary(result, out.width, frames_table)),
                   json_output, errors.debug_enabled(ctx.meta), reporter)
