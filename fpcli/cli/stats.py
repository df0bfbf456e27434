"""`forestprune stats VIDEO...`: what pruning does to a video, without generating an answer.

Loads only the vision tower and projector, encodes the frames once, then prunes those same
features with --method and every --compare method, so the comparison isolates the selection.
"""

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
    ModelSettings,
    Quiet,
    Ratio,
    RunSettings,
    Seed,
    TauP,
    TauS,
    parse_compare,
    validate,
)
from fpcli.cli.progress import Reporter
from fpcli.cli.render import stats_summary

if TYPE_CHECKING:
    import torch

    from fpcli.model import VideoLLM
    from fpcli.prune import PruneResult


def timed_prune(features: torch.Tensor, grid: tuple[int, int], settings: RunSettings, method: str
                ) -> tuple[PruneResult, float]:
    """Prune with `method`; seconds measured when the device has finished (CUDA-synchronised)."""
    from fpcli.model.timing import now
    from fpcli.prune import prune

    start = now(features.device)
    result = prune(features, grid, settings.ratio, method, **settings.prune_options(method))
    return result, now(features.device) - start


def forest_dict(result: PruneResult) -> Optional[dict[str, Any]]:
    return result.forest.summary().to_dict() if result.forest is not None else None


def video_stats(llm: VideoLLM, video: Path, settings: RunSettings, reporter: Reporter, load_s: float,
                viz: Optional[Path]) -> dict[str, Any]:
    """Sample, encode once, prune with each method; the result in its JSON form (and the --viz picture)."""
    from fpcli.model.timing import peak_memory_mb, reset_peak_memory
    from fpcli.video import sample_frames

    reset_peak_memory(llm.device)
    start = time.perf_counter()
    clip = sample_frames(video, **settings.sampling(llm.default_frames), progress=reporter.callback)
    decode_s = time.perf_counter() - start
    encoded = llm.encode(clip.frames, progress=reporter.callback)
    features, grid = encoded.features, tuple(encoded.grid)  # [T, N, D], (H, W)
    frames, before = features.shape[0], features.shape[0] * features.shape[1]
    runs = [timed_prune(features, grid, settings, method) for method in settings.methods()]
    main, prune_s = runs[0]
    timing = {"load": load_s, "decode": decode_s, "encode": encoded.encode_s, "prune": prune_s}
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
        "timing_s": {**timing, "total": sum(timing.values())},
        "peak_memory_mb": peak_memory_mb(features.device),
        "forest": forest_dict(main),
        "compare": [
            {
                "method": run.method,
                "tokens": {"visual_after": run.k},
                "per_frame_kept": run.per_frame.tolist(),
                "timing_s": {"prune": seconds},
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
    ratio: Ratio = 0.9,
    method: Method = "forestprune",
    compare: Annotated[
        Optional[str],
        typer.Option("--compare", rich_help_panel="Pruning", show_default=False,
                     help="More methods to run on the same features, comma-separated: uniform,gprune,dycoke."),
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
    settings = RunSettings(
        ratio=ratio, method=method, frames=frames, fps=fps, tau_s=tau_s, tau_p=tau_p, seed=seed,
        compare=parse_compare(compare),
    )
    validate(settings)
    paths = expand_videos(videos)
    model_settings = ModelSettings(model, layout and layout.value, device, dtype.value, "sdpa")
    out = Console(highlight=False, soft_wrap=True)
    failed = 0
    with Reporter(quiet) as reporter:
        llm = load(model_settings, reporter, vision_only=True)
        load_s = llm.load_s
        for path in paths:
            try:
                result = video_stats(llm, path, settings, reporter, load_s, viz_path(viz, path, len(paths) > 1))
            except Exception as exc:  # one bad video of several must not stop the others
                failed += 1
                errors.report(exc, errors.debug_enabled(ctx.meta))
                continue
            load_s = 0.0  # the load is paid once: later videos report 0, so totals add up
            if json_output:
                print(json.dumps(result, ensure_ascii=False), flush=True)
                continue
            if len(paths) > 1:
                out.print(Rule(str(path), align="left"))
            out.print(stats_summary(result))
    if failed:
        raise typer.Exit(errors.EXIT_FAILURE)
