"""Wall time and peak memory of every pruning method on video-sized feature tensors.

    python benchmarks/bench_prune.py [--device cpu|cuda] [--repeat 3] [--shapes 64x196x1152,...]
                                     [--methods forestprune,gprune] [--ratio 0.9]

Each (method, case) runs in a fresh subprocess, so one case's allocations and caches cannot
hide another's peak. Memory, per device:
- cpu: the process's peak resident set (ru_maxrss) while pruning, minus its resident set just
  before the first call (inputs already built, torch loaded). "peak" is the whole process's
  high-water mark, input features included; "extra" is what pruning added on top.
  The inputs are written frame by frame into one preallocated tensor, so building them does
  not leave a high-water mark above the resident set that would hide pruning's own peak.
- cuda: torch.cuda.max_memory_allocated (tensors only, not the CUDA context).
Time is the median wall time of `--repeat` calls after one warm-up call (cuda: synchronised);
a case whose calls take more than SLOW_CASE_S in all stops repeating early (notes give n).

Cases: synthetic "video" features (per-position content that drifts slowly, with noise and a
hard cut every 32 frames: the redundancy of real footage), "many roots" features (i.i.d.
noise: no token resembles another, so nearly every ForestPrune node stays a root and the root
merge does the most work), and the real EfficientNet features of bikes.mp4 from
../shared/data/bikes64_effnet.pt, when present.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

DEFAULT_SHAPES = "32x196x1152,64x169x1152,64x196x1152:roots,256x169x1152,512x196x1152,bikes"
BIKES = Path(__file__).resolve().parents[2] / "shared" / "data" / "bikes64_effnet.pt"
CASE_TIMEOUT_S = 600
SLOW_CASE_S = 30.0


def _grid(n: int) -> tuple[int, int]:
    side = int(round(n**0.5))
    if side * side != n:
        raise SystemExit(f"token count {n} is not a square grid")
    return side, side


def make_features(case: str, device: str) -> torch.Tensor:
    """The case's features [T, N, D] float32 (bikes: its stored float16) on the device."""
    if case == "bikes":
        return torch.load(BIKES, weights_only=True)["features"].to(device)
    shape, _, kind = case.partition(":")
    t, n, d = (int(v) for v in shape.split("x"))
    gen = torch.Generator().manual_seed(0)
    out = torch.empty(t, n, d, device=device)
    base = torch.empty(n, d)
    for i in range(t):
        if kind == "roots":
            out[i] = torch.randn(n, d, generator=gen)
            continue
        if i % 32 == 0:
            base = torch.randn(n, d, generator=gen)
        base += 0.15 * torch.randn(n, d, generator=gen)
        out[i] = base + 0.2 * torch.randn(n, d, generator=gen)
    return out


def make_extras(features: torch.Tensor) -> dict[str, torch.Tensor]:
    """Vision-tower extras of SigLIP-so400m's shape, for the methods that take them (visionzip): attention
    received [T, N] (positive, about 1 per frame) and head-mean keys [T, N, 72]."""
    t, n, _ = features.shape
    gen = torch.Generator().manual_seed(1)
    attention = torch.softmax(torch.randn(t, n, generator=gen), dim=1)  # [T, N]
    keys = torch.randn(t, n, 72, generator=gen)  # [T, N, Dk]
    return {"vision_attention": attention.to(features.device), "vision_keys": keys.to(features.device)}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(method: str, case: str, device: str, repeat: int, ratio: float) -> dict[str, object]:
    from fpcli.prune import prune

    features = make_features(case, device)
    extras = make_extras(features)
    grid = _grid(features.shape[1])
    if method == "none":
        ratio = 0.0  # "none" keeps everything, so only ratio 0 is valid
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_mb()
    times = []
    result = None
    for _ in range(repeat + 1):  # the first call warms up
        sync()
        start = time.perf_counter()
        result = prune(features, grid=grid, ratio=ratio, method=method, extras=extras)
        sync()
        times.append(time.perf_counter() - start)
        if len(times) >= 2 and sum(times) > SLOW_CASE_S:
            break
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
        extra = peak - base / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        extra = peak - base
    notes = [f"ratio {ratio}"] if method == "none" else []
    if result.forest is not None:
        notes.append(f"R={result.forest.roots_before} K={result.k}")
    if len(times) - 1 < repeat:
        notes.append(f"n={len(times) - 1}")
    note = ", ".join(notes)
    return {"ms": statistics.median(times[1:]) * 1000, "peak_mb": peak, "extra_mb": extra, "note": note}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--shapes", default=DEFAULT_SHAPES, help="TxNxD[:roots] or bikes, comma-separated")
    parser.add_argument("--methods", default=None, help="comma-separated (default: all registered)")
    parser.add_argument("--ratio", type=float, default=0.9)
    parser.add_argument("--worker", nargs=2, metavar=("METHOD", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.device, args.repeat, args.ratio)))
        return

    from fpcli.prune import available_methods

    methods = args.methods.split(",") if args.methods else available_methods()
    cases = [c for c in args.shapes.split(",") if c != "bikes" or BIKES.exists()]
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name}; ratio {args.ratio}; median of {args.repeat} after a warm-up; memory: see --help")
    print(_row("method", "case", "time ms", "peak MB", "extra MB", "notes"))
    print(_row("---", "---", "---:", "---:", "---:", "---"))
    for case in cases:
        for method in methods:
            command = [sys.executable, __file__, "--worker", method, case, "--device", args.device,
                       "--repeat", str(args.repeat), "--ratio", str(args.ratio)]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=CASE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                print(_row(method, case, "timeout", "", "", f"> {CASE_TIMEOUT_S} s"), flush=True)
                continue
            if done.returncode:
                error = (done.stderr.strip().splitlines() or ["?"])[-1]
                print(_row(method, case, "error", "", "", error), flush=True)
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(_row(method, case, f"{r['ms']:.1f}", f"{r['peak_mb']:.0f}", f"{r['extra_mb']:.0f}", r["note"]),
                  flush=True)


def _row(method: str, case: str, ms: str, peak: str, extra: str, note: str) -> str:
    return f"| {method:<12} | {case:<18} | {ms:>9} | {peak:>8} | {extra:>8} | {note} |"

if __name__ == "__main__":
    main()
