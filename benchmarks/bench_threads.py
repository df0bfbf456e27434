"""Torch's intra-op threads for the small tensor work of pruning versus the vision tower, on this machine.

    python benchmarks/bench_threads.py [--threads 1,2] [--repeat 5] [--frames 2] [--layers 4]

Pruning a clip is many small tensor operations (ForestPrune on [8, 196, 1152] keeping 256 tokens); the vision tower
is a few large matrix products. On a loaded machine with few cores, extra threads can make the first far slower
(they wait for cores held by other processes) while the second gains from them. This measures both, one thread count
after another in each round (interleaved, so a change in the machine's load hits every setting alike), and prints the
median seconds per setting and stage. The tower has SigLIP-so400m's widths (LLaVA-OneVision's: 1152 wide, 16 heads,
4304 MLP, 729 patches a frame) with `--layers` of its 27 layers and random weights; its time scales with the layers.
`uptime` before and after says how loaded the machine was.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

import torch

from fpcli.prune import prune


def tower(layers: int) -> torch.nn.Module:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    config = SiglipVisionConfig(hidden_size=1152, intermediate_size=4304, num_attention_heads=16,
                                num_hidden_layers=layers, image_size=378, patch_size=14)
    torch.manual_seed(0)
    return SiglipVisionModel(config).eval()


def seconds(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="thread counts to compare, comma-separated")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--frames", type=int, default=2, help="frames through the vision tower per call")
    parser.add_argument("--layers", type=int, default=4, help="SigLIP layers in the tower (of 27)")
    args = parser.parse_args()
    counts = [int(n) for n in args.threads.split(",")]
    print(f"load before: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(8, 196, 1152, generator=gen)  # [T, N, D]
    ratio = 1 - 256 / (8 * 196)  # keeps 256 tokens
    model = tower(args.layers)
    pixels = torch.randn(args.frames, 3, 378, 378, generator=gen)  # [T, 3, H, W]
    stages = {
        "prune forestprune (256 kept)": lambda: prune(features, (14, 14), ratio, "forestprune"),
        "prune uniform (256 kept)": lambda: prune(features, (14, 14), ratio, "uniform"),
        f"vision tower ({args.frames} frames, {args.layers} layers)": lambda: model(pixel_values=pixels),
    }
    times: dict[tuple[str, int], list[float]] = {(stage, n): [] for stage in stages for n in counts}
    with torch.inference_mode():
        for n in counts:  # warm-up of every setting
            torch.set_num_threads(n)
            for work in stages.values():
                work()
        for _ in range(args.repeat):
            for n in counts:
                torch.set_num_threads(n)
                for stage, work in stages.items():
                    times[stage, n].append(seconds(work))
    print(f"load after:  {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(f"median of {args.repeat} interleaved rounds, seconds")
    print(f"{'stage':<36}" + "".join(f"{f'{n} thread' + ('s' if n > 1 else ''):>12}" for n in counts))
    for stage in stages:
        print(f"{stage:<36}" + "".join(f"{statistics.median(times[stage, n]):>12.4f}" for n in counts))


if __name__ == "__main__":
    main()
