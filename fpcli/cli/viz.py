"""`--viz FILE` of `ask` and `stats`: what each method keeps of the same sampled frames, drawn by fpcli.viz.

A strip per method (--method, then the --compare ones), with `--viz-trees N` forestprune's N deepest trees, written
as one image or, for FILE.html, as a self-contained page with the methods' table above the pictures. The data is
what the run already holds: `stats` each method's PruneResult (MethodRun.pruned, the forest included), `ask` each
answer's (AnswerResult.pruned: for an in-LLM method the tokens its deepest layers ran on). The picture shows pixels,
so a feature-cache hit decodes the frames for it. The options are checked before anything runs (`check`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np

from fpcli.cli import errors
from fpcli.cli.progress import Reporter
from fpcli.run.answering import answers_with_frames
from fpcli.run.settings import RunSettings
from fpcli.run.source import LazyModel
from fpcli.viz import output
from fpcli.viz.cells import ClipPicture
from fpcli.viz.report import Figure, Table
from fpcli.viz.strips import Strip, draw_strips, stage
from fpcli.viz.trees import TreeNodes, draw_trees

if TYPE_CHECKING:
    from fpcli.model.inspect import StatsResult
    from fpcli.model.result import AnswerResult
    from fpcli.prune import PruneResult
    from fpcli.video import VideoClip

FOREST_METHOD = "forestprune"  # the method whose result holds the forest --viz-trees draws


def check(viz: Optional[Path], trees: Optional[int], methods: Sequence[str]) -> None:
    """Usage errors (exit 2) before any work: --viz-trees without --viz, or with no method that builds a forest."""
    if trees is None:
        return
    if viz is None:
        raise errors.usage_error("--viz-trees draws on the --viz picture", hint="add --viz FILE")
    if FOREST_METHOD not in methods:
        raise errors.usage_error(f"--viz-trees draws {FOREST_METHOD}'s trees, and no method run builds a forest "
                                 f"({', '.join(methods)})", hint=f"add {FOREST_METHOD} to --method or --compare")


def viz_path(viz: Optional[Path], video: Path, several: bool) -> Optional[Path]:
    """--viz out.png as given for one video; out-<video stem>.png for each of several."""
    if viz is None or not several:
        return viz
    return viz.with_name(f"{viz.stem}-{video.stem}{viz.suffix}")


def picture_of(clip: VideoClip, grid: tuple[int, int], group: int, frame_size: Optional[tuple[int, int]]
               ) -> ClipPicture:
    return ClipPicture(Path(clip.path).name, np.asarray(clip.frames), np.asarray(clip.timestamps, dtype=float),
                       (int(grid[0]), int(grid[1])), group, frame_size)


def strip_of(pruned: PruneResult, from_layer: int = 0) -> Strip:
    merged = None if pruned.merged_into is None else pruned.merged_into.cpu().numpy()
    return Strip(pruned.method, pruned.keep.cpu().numpy(), stage(from_layer), merged)


def figures(picture: ClipPicture, strips: list[Strip], runs: Sequence[PruneResult], trees: Optional[int]
            ) -> list[Figure]:
    """A figure per strip, then the trees of the first run that holds a forest (check() made sure one does)."""
    out = [Figure(f"{strip.method}: {len(strip.keep)}/{picture.tokens} tokens kept, {strip.stage}", image)
           for strip, image in zip(strips, draw_strips(picture, strips))]
    if trees is not None:
        run = next(run for run in runs if run.forest is not None)
        image = draw_trees(picture, TreeNodes.of(run.forest), run.keep.cpu().numpy(), trees)
        out.append(Figure(f"{run.method}: the {trees} deepest trees", image))
    return out


def title(picture: ClipPicture, model: str, ratio: float) -> str:
    groups = f" in {picture.cells} groups" if picture.group > 1 else ""
    return f"{picture.name} · {model} · ratio {ratio:g} · {len(picture.frames)} frames{groups}, grid " \
           f"{picture.grid[0]}x{picture.grid[1]}"


def write_stats(path: Path, clip: VideoClip, result: StatsResult, group: int, trees: Optional[int]) -> Path:
    """`stats --viz`: a strip per method run on the shared features."""
    runs = [result.main, *result.compare]
    picture = picture_of(clip, result.grid, group, result.frame_size)
    pruned = [run.pruned for run in runs]
    table = Table(
        ("method", "visual tokens", "prune s", "trees (roots after merging)"),
        [(run.method, f"{run.visual_after}/{result.visual_before}", f"{run.prune_s:.4f}",
          "" if run.forest is None else f"{run.forest['trees']} ({run.forest['roots_after']})") for run in runs],
        numeric=(False, True, True, True),
    )
    return output.write(path, title(picture, result.model, result.ratio),
                        figures(picture, [strip_of(run) for run in pruned], pruned, trees), table)


def answer_row(record: dict[str, Any], stage_text: str) -> tuple[str, ...]:
    """A method's row of the report table, from its answer's JSON form (rounded as --json rounds it)."""
    tokens, timing = record["tokens"], record["timing_s"]
    return (record["method"], stage_text, f"{tokens['visual_after']}/{tokens['visual_before']}",
            f"{timing['encode']:.3f}", f"{timing['prune']:.4f}", f"{timing['prefill']:.3f}",
            f"{timing['generate']:.3f}", f"{record['prefill_tflops']['after']:.4g}", f"{record['peak_memory_mb']:.1f}",
            record["answer"])


def write_answers(path: Path, clip: VideoClip, results: Sequence[AnswerResult], group: int,
                  frame_size: Optional[tuple[int, int]], trees: Optional[int]) -> Path:
    """`ask --viz`: a strip per answer's method, at the layer from which its tokens were all that was left."""
    first = results[0]
    picture = picture_of(clip, first.grid, group, frame_size)
    layers = [result.tokens.visual_in_llm[-1]["from_layer"] if result.tokens.visual_in_llm else 0
              for result in results]
    strips = [strip_of(result.pruned, layer) for result, layer in zip(results, layers)]
    table = Table(
        ("method", "stage", "visual tokens", "encode s", "prune s", "prefill s", "generate s", "prefill TFLOPs",
         "peak MB", "answer"),
        [answer_row(result.to_dict(), strip.stage) for result, strip in zip(results, strips)],
        numeric=(False, False, True, True, True, True, True, True, True, False),
    )
    return output.write(path, title(picture, first.model, first.ratio),
                        figures(picture, strips, [result.pruned for result in results], trees), table,
                        notes=[f"Question: {first.question}"])


def answer_with_viz(model: LazyModel, video: Path, question: str, settings: RunSettings, reporter: Reporter,
                    path: Path, trees: Optional[int]) -> dict[str, Any] | list[dict[str, Any]]:
    """`ask --viz`: the answer (with --compare each method's) in its JSON form, and the picture of what each method
    kept."""
    answers = answers_with_frames(model, video, question, settings, reporter)
    write_answers(path, answers.clip, answers.results, answers.temporal_patch_size, answers.frame_size, trees)
    reporter.message(f"Wrote {path}")
    records = [result.to_dict() for result in answers.results]
    return records if settings.compare else records[0]
