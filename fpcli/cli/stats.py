"""`forestprune stats VIDEO...`: what pruning does to a video, without generating an answer.

Loads only the vision tower and projector, encodes the frames once, then prunes those same
features with --method and every --compare method, so the comparison isolates the selection.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from fpcli.cli import errors
from fpcli.cli.loading import LazyModel, decode, each_video, expand_videos
from fpcli.cli.options import (
    Config,
    Debug,
    Device,
    DType,
    DTypeOpt,
    Fps,
    Frames,
    Json,
    LayoutOpt,
    Method,
    Model,
    Quiet,
    Ratio,
    RunSettings,
    Seed,
    TauP,
    TauS,
    settings_from,
)
from fpcli.cli.progress import Reporter
from fpcli.cli.render import stats_summary

if TYPE_CHECKING:
    import torch

    from fpcli.prune import PruneResult


def timed_prune(features: torch.Tensor, grid: tuple[int, int], settings: RunSettings, method: str,
                extras: dict[str, torch.Tensor]) -> tuple[PruneResult, float]:
    """Prune with `method` (vision-tower extras at hand); seconds measured when the device has finished."""
    from fpcli.model.timing import now
    from fpcli.prune import prune

    start = now(features.device)
    result = prune(features, grid, settings.prune_ratio, method, extras=extras, **settings.prune_options(method))
    return result, now(features.device) - start


def forest_dict(result: PruneResult) -> Optional[dict[str, Any]]:
    return result.forest.summary().to_dict() if result.forest is not None else None


def video_stats(model: LazyModel, video: Path, settings: RunSettings, reporter: Reporter, viz: Optional[Path]
                ) -> dict[str, Any]:
    """Sample (before the model loads), encode once, prune with each method; the result in its JSON form (and
    the --viz picture)."""
    from fpcli.model.result import round_megabytes, round_seconds, round_timings
    from fpcli.model.timing import peak_memory_mb, reset_peak_memory

    clip, decode_s = decode(video, settings, model, reporter)
    llm = model.get()
    reset_peak_memory(llm.device)
    encoded = llm.encode(clip.frames, progress=reporter.callback)
    features, grid = encoded.features, tuple(encoded.grid)  # [T, N, D], (H, W)
    frames, before = features.shape[0], features.shape[0] * features.shape[1]
    runs = [timed_prune(features, grid, settings, method, encoded.extras) for method in settings.methods()]
    main, prune_s = runs[0]
    timing = {"load": model.load_s_once(), "decode": decode_s, "encode": encoded.encode_s, "prune": prune_s}
    result = {
        "video": str(clip.path),
        "model": llm.name,
        "layout": llm.layout,
        "method": main.method,
        "ratio": main.ratio,
        "frames": frames,
        "grid": list(grid),
        "tokens": {"visual_before": before, "visual_after": main.k, "newline": llm.newline_count(frames, grid)},
        "per_frame_kept": main.per_frame.tolist(),
        "timestamps": [float(t) for t in clip.timestamps],
        "timing_s": round_timings(timing),
        "peak_memory_mb": round_megabytes(peak_memory_mb(features.device)),
        "forest": forest_dict(main),
        "compare": [
            {
                "method": run.method,
                "tokens": {"visual_after": run.k},
                "per_frame_kept": run.per_frame.tolist(),
                "timing_s": {"prune": round_seconds(seconds)},
                "forest": forest_dict(run),
            }
            for run, seconds in runs[1:]
        ],
    }
    if viz is not None:
        from fpcli.cli.viz import write_viz

        title = f"{Path(clip.path).name} | {main.method}, ratio {main.ratio:g} | {main.k}/{before} tokens kept"
        write_viz(viz, clip.frames, main.keep.cpu().numpy(), grid, clip.timestamps, title)
        reporter.message(f"Wrote {viz}")
    return result


def viz_path(viz: Optional[Path], video: Path, several: bool) -> Optional[Path]:
    """--viz out.png as given for one video; out-<video stem>.png for each of several."""
    if viz is None or not several:
        return viz
    return viz.with_name(f"{viz.stem}-{video.stem}{viz.suffix or '.png'}")


def stats(
    ctx: typer.Context,
    videos: Annotated[
        list[Path], typer.Argument(metavar="VIDEO", help="Video files, or folders of videos.", show_default=False)
    ],
    model: Model = None,
    layout: LayoutOpt = None,
    device: Device = "auto",
    dtype: DTypeOpt = DType.auto,
    ratio: Ratio = None,
    method: Method = "forestprune",
    compare: Annotated[
        Optional[str],
        typer.Option("--compare", rich_help_panel="Pruning", show_default=False,
                     help="More methods to run on the same features, comma-separated (e.g. uniform,gprune,dycoke)."),
    ] = None,
    frames: Frames = None,
    fps: Fps = None,
    tau_s: TauS = None,
    tau_p: TauP = None,
    seed: Seed = 0,
    viz: Annotated[
        Optional[Path],
        typer.Option("--viz", dir_okay=False, rich_help_panel="Output", show_default=False,
                     help="Write a PNG: the frames with pruned patches dimmed, and the retention per frame."),
    ] = None,
    config: Config = None,
    json_output: Json = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Show what pruning keeps of each VIDEO: per-frame retention, trees and roots, tokens, timings.

    Loads only the vision tower and projector (no LLM weights) and generates nothing.
    """
    settings, model_settings = settings_from(ctx)
    paths = expand_videos(videos)
    with Reporter(quiet) as reporter:
        llm = LazyModel(model_settings, reporter, vision_only=True)

        def measure(path: Path) -> dict[str, Any]:
            return video_stats(llm, path, settings, reporter, viz_path(viz, path, len(paths) > 1))

        each_video(paths, measure, lambda out, result: out.print(stats_summary(result)), json_output,
                   errors.debug_enabled(ctx.meta))
