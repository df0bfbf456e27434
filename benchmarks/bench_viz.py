"""What `--viz` adds to a run: drawing the strips and the trees, and writing the PNG or the HTML report.

    python benchmarks/bench_viz.py [--frames 64] [--grid 13] [--repeat 3]

Random features [T, N, D] of LLaVA-Video's shape (64 frames of 13x13 tokens, 3584 wide) are pruned at ratio 0.9 by
forestprune, gprune, uniform and visionzip (random attention and keys as its extras); random 384x216 frames stand in
for the video. Each round times, interleaved: the four strips (fpcli.viz.strips.draw_strips), forestprune's 5 deepest
trees (draw_trees), and writing all five figures as a PNG and as the HTML page. Prints the median of `--repeat` rounds
after a warm-up, and the machine's load (uptime) before and after.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fpcli.prune import prune
from fpcli.viz import output
from fpcli.viz.cells import ClipPicture
from fpcli.viz.report import Figure
from fpcli.viz.strips import Strip, draw_strips
from fpcli.viz.trees import TreeNodes, draw_trees

METHODS = ("forestprune", "gprune", "uniform", "visionzip")


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--grid", type=int, default=13)
    parser.add_argument("--dim", type=int, default=3584)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    t, n = args.frames, args.grid * args.grid
    features = torch.randn(t, n, args.dim)
    extras = {"vision_attention": torch.rand(t, n), "vision_keys": torch.randn(t, n, 64)}
    results = [prune(features, (args.grid, args.grid), 0.9, method, extras=extras) for method in METHODS]
    strips = [Strip(r.method, r.keep.numpy(), merged_into=None if r.merged_into is None else r.merged_into.numpy())
              for r in results]
    frames = np.random.default_rng(0).integers(0, 256, (t, 216, 384, 3), dtype=np.uint8)
    clip = ClipPicture("random.mp4", frames, np.arange(t) * 0.5, (args.grid, args.grid))
    nodes = TreeNodes.of(results[0].forest)

    stages: dict[str, list[float]] = {"strips (4 methods)": [], "trees (5)": [], "write PNG": [], "write HTML": []}
    print(f"load before: {load()}")
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.repeat + 1):
            start = time.perf_counter()
            images = draw_strips(clip, strips)
            middle = time.perf_counter()
            trees = draw_trees(clip, nodes, results[0].keep.numpy(), 5)
            drawn = time.perf_counter()
            figures = [Figure(strip.method, image) for strip, image in zip(strips, images)] + [Figure("trees", trees)]
            output.write(Path(folder) / "out.png", "bench", figures)
            png = time.perf_counter()
            output.write(Path(folder) / "out.html", "bench", figures)
            done = time.perf_counter()
            if round_:  # the first round warms up
                for name, seconds in zip(stages, (middle - start, drawn - middle, png - drawn, done - png)):
                    stages[name].append(seconds)
    print(f"load after:  {load()}")
    print(f"{t} frames of {args.grid}x{args.grid} tokens, median of {args.repeat} rounds")
    print(f"{'stage':<20} {'seconds':>8}")
    for name, times in stages.items():
        print(f"{name:<20} {statistics.median(times):8.3f}")


if __name__ == "__main__":
    main()
