"""`python -m fpcli.devtools tiny-checkpoint DIR [--layout LAYOUT] [--seed N] [--shape tiny|llava-ov-0.5b|...] [--device D]`.

Writes a tiny random checkpoint (see fpcli.devtools.tiny_checkpoint) for trying the CLI offline: its answers are
noise, everything else is the real code path. Exit 2 for bad usage (DIR not empty), 0 on success.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fpcli.model import LAYOUTS
from fpcli.devtools.tiny_checkpoint import SHAPES, build_tiny_checkpoint
from fpcli.devtools.tiny_qwen import SHAPES as QWEN_SHAPES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fpcli.devtools", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    tiny = commands.add_parser(
        "tiny-checkpoint",
        help="write a tiny random LLaVA-OneVision or Qwen-VL checkpoint (random weights: its answers are noise)",
        description="Write a tiny random LLaVA-OneVision (or Qwen-VL) checkpoint into DIR, to try `forestprune "
        "--model DIR` offline. Random weights: its answers are noise; everything else is the real code path.",
    )
    tiny.add_argument("directory", metavar="DIR", type=Path, help="where to write it (new or empty)")
    tiny.add_argument("--layout", choices=LAYOUTS, default=LAYOUTS[0],
                      help="token layout: onevision (8x8 tokens a frame), video (7x7, the LLaVA-Video layout), or a "
                      "Qwen-VL architecture (qwen2.5-vl, qwen3-vl: merged tokens, M-RoPE)")
    tiny.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    tiny.add_argument("--shape", choices=list(dict.fromkeys([*SHAPES, *QWEN_SHAPES])), default="tiny",
                      help="sizes: tiny (default), tiny-deep (4 decoder layers), or a real model's (llava-ov-0.5b "
                      "3 GB, qwen2.5-vl-3b 7.5 GB, llava-video-7b 16 GB, qwen2.5-vl-7b 16.6 GB: the real compute, "
                      "for benchmarks)")
    tiny.add_argument("--device", default="cpu", help="where the random weights are drawn (cuda: seconds for a 7B)")
    args = parser.parse_args(argv)
    if args.directory.exists() and (not args.directory.is_dir() or any(args.directory.iterdir())):
        print(f"Error: {args.directory} exists and is not an empty folder", file=sys.stderr)
        return 2
    try:
        build_tiny_checkpoint(args.directory, layout=args.layout, seed=args.seed, shape=args.shape, device=args.device)
    except ValueError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    print(f"Wrote a {args.shape} random {args.layout} checkpoint to {args.directory} (random weights: answers are noise). "
          f"Try: forestprune ask sample_videos/moving_object.mp4 \"What is moving?\" --model {args.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
