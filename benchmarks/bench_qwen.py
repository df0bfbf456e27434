"""End-to-end cost of ForestPrune on Qwen2.5-VL: encode, prune, prefill, generate at ratio 0 and 0.9.

    python benchmarks/bench_qwen.py [--tiny] [--frames 8] [--size 448x784] [--device cpu|cuda] [--dtype auto]
                                    [--max-new-tokens 8] [--cache DIR] [--json]

The model is a random-weight checkpoint of Qwen2.5-VL-3B-Instruct's real shape (3.75B parameters, 7.5 GB on disk in
bfloat16, written once to DIR, default <tmp>/forestprune-bench/qwen2.5-vl-3b-random, by fpcli.devtools.tiny_qwen), or
with `--tiny` the tests' tiny checkpoint (seconds, to check the script runs). The clip is random frames of `--size`
(HxW) that the model's preprocessing resizes (448x784 becomes 16x28 merged tokens per temporal group at the real
shape). Pruning does not change the encode cost (it happens after the vision tower), so the prefill saving at 0.9 is
the number to read: it should be close to the token ratio, as for LLaVA.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from fpcli.devtools.tiny_qwen import build_tiny_qwen  # the tests' checkpoint builder, at the real shape here
from fpcli.model import GenerationConfig, load_model


def checkpoint(cache: Path, tiny: bool) -> Path:
    target = cache / ("qwen2.5-vl-tiny" if tiny else "qwen2.5-vl-3b-random")
    if not (target / "model.safetensors").is_file() and not (target / "model.safetensors.index.json").is_file():
        print(f"writing the random checkpoint to {target} ...", file=sys.stderr)
        build_tiny_qwen(target, "qwen2_5_vl", real_shape=not tiny)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny checkpoint instead of the 3B shape")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", default="448x784", help="frame HxW before the model's resize")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "forestprune-bench")
    parser.add_argument("--json", action="store_true", help="one JSON object per ratio instead of the table")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.lower().split("x"))

    llm = load_model(checkpoint(args.cache, args.tiny), device=args.device, dtype=args.dtype)
    rng = np.random.default_rng(0)
    clip = SimpleNamespace(
        path="random.mp4",
        frames=rng.integers(0, 256, (args.frames, height, width, 3), dtype=np.uint8),
        timestamps=np.arange(args.frames) / 2.0,
        duration=args.frames / 2.0,
        indices=np.arange(args.frames),
    )
    generation = GenerationConfig(max_new_tokens=args.max_new_tokens)
    llm.answer(clip, "Warm-up.", ratio=0.9, generation=GenerationConfig(max_new_tokens=1))
    rows = []
    for ratio in (0.0, 0.9):
        result = llm.answer(clip, "What happens in the video?", ratio=ratio, generation=generation)
        t = result.timing_s
        rows.append({"ratio": ratio, "visual": [result.tokens.visual_before, result.tokens.visual_after],
                     "prompt": result.tokens.prompt, "grid": list(result.grid), "groups": result.temporal_groups,
                     "encode_s": t.encode, "prune_s": t.prune, "prefill_s": t.prefill, "generate_s": t.generate,
                     "peak_mb": result.peak_memory_mb})  # fmt: skip
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"{llm.name} on {llm.device} {llm.dtype}, {args.frames} frames of {args.size}")
    print(f"{'ratio':>5} {'visual':>12} {'prompt':>7} {'encode s':>9} {'prune s':>8} {'prefill s':>10} "
          f"{'generate s':>11} {'peak MB':>8}")  # fmt: skip
    for row in rows:
        visual = f"{row['visual'][0]}->{row['visual'][1]}"
        print(f"{row['ratio']:>5} {visual:>12} {row['prompt']:>7} {row['encode_s']:>9.3f} {row['prune_s']:>8.3f} "
              f"{row['prefill_s']:>10.3f} {row['generate_s']:>11.3f} {row['peak_mb']:>8.0f}")  # fmt: skip
    saving = 1 - rows[1]["prefill_s"] / rows[0]["prefill_s"]
    print(f"prefill saving at 0.9: {saving:.1%} (tokens dropped: {1 - rows[1]['prompt'] / rows[0]['prompt']:.1%})")


if __name__ == "__main__":
    main()
