"""What the vision-tower extras (visionzip's attention received and keys) add to encoding.

    python benchmarks/bench_extras.py [--device cpu|cuda] [--dtype float32|bfloat16] [--frames 8] [--repeat 3]
    python benchmarks/bench_extras.py --tiny        # the tests' tiny tower shape, for a quick check

Builds a randomly initialised SigLIP vision tower of SigLIP-so400m's shape (26 layers as LLaVA-OneVision uses
it, width 1152, 16 heads, 384 px, patch 14: 729 patches; nothing is downloaded) and times one tower call for
`--frames` frames without and with the extras (the two projection hooks, the hand-computed attention received
and the head-mean keys of the last layer). Prints the median of `--repeat` calls after a warm-up, each way.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fpcli.model.llava.vision_extras import capture_queries_keys, encoder_layers, layer_extras

SO400M = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=26, num_attention_heads=16,
              image_size=384, patch_size=14)
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=30,
            patch_size=2)


def timed(fn, device: torch.device, repeat: int) -> float:
    """Median seconds of `repeat` calls after one warm-up (CUDA-synchronised)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    for _ in range(repeat + 1):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny tower instead of SigLIP-so400m")
    args = parser.parse_args()

    from transformers import AutoModel, SiglipVisionConfig

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    config = SiglipVisionConfig(**(TINY if args.tiny else SO400M), vision_use_head=False)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    tower = AutoModel.from_config(config).to(device=device, dtype=dtype).eval()
    size = config.image_size
    pixels = torch.randn(args.frames, 3, size, size, device=device, dtype=dtype)
    layer = encoder_layers(tower)[-1]

    @torch.inference_mode()
    def plain() -> None:
        tower(pixels, output_hidden_states=-1, return_dict=True)

    @torch.inference_mode()
    def with_extras() -> None:
        with capture_queries_keys(layer) as captured:
            tower(pixels, output_hidden_states=-1, return_dict=True)
        layer_extras(layer, captured)

    base = timed(plain, device, args.repeat)
    extra = timed(with_extras, device, args.repeat)
    shape = "tiny" if args.tiny else "SigLIP-so400m"
    patches = (size // config.patch_size) ** 2
    print(f"{shape}, {patches} patches, {args.frames} frames, {args.device} {args.dtype}, "
          f"{torch.get_num_threads()} threads")
    print(f"tower            {base * 1000 / args.frames:9.2f} ms per frame")
    print(f"tower + extras   {extra * 1000 / args.frames:9.2f} ms per frame ({(extra / base - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()
