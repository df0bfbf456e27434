"""The paper's efficiency comparison (its Fig. 4): pruning time, prefill time, TFLOPs, peak memory and visual tokens
of every method, pre-LLM and in-LLM, answering one question about one encoded clip.

    python benchmarks/bench_methods.py                      # CPU: 4 frames, both layouts, llava-ov-0.5b's shape
    python benchmarks/bench_methods.py --device cuda --paper  # 32 frames 14x14 (onevision), 64 frames 13x13 (video)
    python benchmarks/bench_methods.py --tiny               # the tests' tiny checkpoint, to check the script runs
    python benchmarks/bench_methods.py --layouts qwen2.5-vl --frames 2 --repeat 1   # Qwen2.5-VL-3B's shape on CPU

The checkpoint is a random-weight LLaVA-OneVision of llava-onevision-qwen2-0.5b-ov's real sizes
(`fpcli.devtools.build_tiny_checkpoint(..., shape="llava-ov-0.5b")`: SigLIP-so400m, Qwen2-0.5B, the real vocabulary),
built once per layout under --root; the qwen2.5-vl layout is a random Qwen2.5-VL of Qwen2.5-VL-3B-Instruct's real
sizes (`shape="qwen2.5-vl-3b"`, 3.75B parameters), where the methods the layout cannot run (visionzip needs the
SigLIP tower's attention) are left out. Random weights compute what the real ones do, so times and FLOPs are real.
The clip (random frames) is encoded once per layout; each method then opens its own session on those features
(`VideoLLM.start`) and its prompt is prefilled once, as the paper measures, so `prune` + `prefill` is the whole cost
of getting the visual tokens through the LLM: a pre-LLM method's selection (forestprune, visionzip, ...) then one
pass over the short prompt; an in-LLM method's one pass over every visual token, its hooks' time reported as prune.
(`ask` runs a pre-LLM method's first question in two passes, the cached prefix and then the question, which on a
CPU adds a pass's fixed cost, about 0.4 s at this shape.) On Qwen-VL each method's session answers the question
with one generated token and its result's timings are read: a pre-LLM method's prefill is those two passes there.
A two-stage method (holitom, flashvid) prunes before the LLM in `start` (counted as prune, with its hooks' time) and
its prompt goes through one pass with its in-LLM stage. Methods run round-robin `--repeat` times after one warm-up
round (first-call imports and allocations), medians reported. Peak memory: on CUDA the max allocated per method
(tensors, weights included); on CPU the process's peak resident set over the method's prune and prefill (Linux's
VmHWM, reset before each method through /proc/self/clear_refs; weights included, so the differences between
methods are what each needs beyond them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from fpcli.devtools.tiny_checkpoint import build_tiny_checkpoint  # noqa: E402
from fpcli.model import GenerationConfig, load_model  # noqa: E402
from fpcli.model.cpu_dtype import AUTO_HELP  # noqa: E402
from fpcli.model.generate import prefill  # noqa: E402
from fpcli.model.inllm.prefill import prefill_pruned  # noqa: E402
from fpcli.model.inllm.span import VisualSpan  # noqa: E402
from fpcli.model.methods import check_for_layout, is_in_llm, kind_of, method_names, ratio_for  # noqa: E402
from fpcli.model.result import visual_stages  # noqa: E402
from fpcli.model.timing import now, peak_memory_mb, reset_peak_memory  # noqa: E402

METHODS = ",".join(method_names())  # every method of the catalogue, none first
QUESTION = "What is happening in this video? Describe the main events."
PAPER_FRAMES = {"onevision": 32, "video": 64}  # the paper's settings: 14x14 and 13x13 tokens a frame
REAL_SHAPES = {"onevision": "llava-ov-0.5b", "video": "llava-ov-0.5b", "qwen2.5-vl": "qwen2.5-vl-3b"}
TINY_OPTIONS = {"fastv": {"K": 1}, "sttm": {"layer": 1}, "holitom": {"layer": 1}, "flashvid": {"layer": 1}}  # the tiny LLM has 2 decoder layers (the defaults use 2)


def checkpoint(root: Path, shape: str, layout: str) -> Path:
    """The random checkpoint of `shape` and `layout` under root, built on first use (atomically: a shared cache)."""
    target = root / f"{shape}-{layout}"
    if (target / "model.safetensors").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{shape}-{layout}-"))
    build_tiny_checkpoint(staging, layout=layout, shape=shape)
    try:
        os.rename(staging, target)
    except OSError:  # built meanwhile by another run
        pass
    return target


def random_clip(frames: int, seed: int = 0) -> SimpleNamespace:
    """`frames` random 360x640 frames at 1 fps, duck-typed like a VideoClip."""
    rng = np.random.default_rng(seed)
    return SimpleNamespace(path=f"random-{frames}f.mp4", frames=rng.integers(0, 256, (frames, 360, 640, 3), np.uint8),
                           indices=np.arange(frames), timestamps=np.arange(frames, dtype=float),
                           duration=float(frames), warnings=[])


def reset_resident_peak() -> None:
    """Linux: the process's resident high-water mark (VmHWM) starts again from its current resident set."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
        refs.write("5")


def resident_peak_mb() -> float:
    """The process's resident high-water mark since the last reset, MB."""
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def measure(llm, features, method: str, ratio: float, options: dict, how) -> dict:
    """`how`'s figures of one method with its peak memory: CUDA's max allocated, or the CPU process's peak resident
    set (weights included)."""
    cuda = llm.device.type == "cuda"
    if cuda:
        reset_peak_memory(llm.device)
    else:
        reset_resident_peak()
    figures = how(llm, features, method, ratio, options)
    return {**figures, "peak_mb": peak_memory_mb(llm.device) if cuda else resident_peak_mb()}


def _measure(llm, features, method: str, ratio: float, options: dict) -> dict:
    """One prefill of `method`'s prompt on `features` (the paper's prune and prefill times; CUDA-synchronised).

    Pre-LLM: prune = `VideoLLM.start` (selection and the visual sequence), prefill = one pass over the pruned prompt.
    In-LLM: one `prefill_pruned` pass over the whole prompt, its hooks' time as prune and the rest as prefill (a
    two-stage method's pre-LLM selection in `start` as prune too)."""
    device = llm.device
    start = now(device)
    session = llm.start(features, ratio=ratio_for(method, ratio), method=method, options=options)
    started = now(device)
    ids, at = session.prompt_ids(QUESTION)
    embeds = session.embeds(ids, at)  # [1, L, D]
    if session.in_llm:
        keep = None if session.before is None else session.before.keep  # a two-stage method's pre-LLM selection
        span = VisualSpan(at, features.frames, features.grid, llm.layout, keep=keep)
        selection_s = 0.0 if keep is None else started - start
        begin = now(device)
        out = prefill_pruned(llm.model, embeds, span, ratio, method, session.options)
        total = now(device) - begin
        prune_s, prefill_s = selection_s + out.prune_s, total - out.prune_s
        tflops, per_layer = out.prefill_tflops, out.visual_lengths
    else:
        begin = now(device)
        prefill(llm.model, embeds)
        prune_s, prefill_s = started - start, now(device) - begin
        tflops, per_layer = llm.prefill_tflops(embeds.shape[1]), [session.pruned.k]
    return {"prune_s": prune_s, "prefill_s": prefill_s, "tflops": tflops, "stages": visual_stages(per_layer)}


def measure_qwen(llm, features, method: str, ratio: float, options: dict) -> dict:
    """One answer of one generated token through `method`'s session (Qwen-VL): its result's prune and prefill."""
    session = llm.start(features, ratio=ratio_for(method, ratio), method=method, options=options)
    result = session.ask(QUESTION, GenerationConfig(max_new_tokens=1))
    return {"prune_s": result.timing_s.prune, "prefill_s": result.timing_s.prefill,
            "tflops": result.prefill_tflops.after, "stages": result.tokens.visual_in_llm}


def runnable(name: str, layout: str) -> bool:
    try:
        check_for_layout(name, layout)
    except ValueError:
        return False
    return True


def run_layout(args, layout: str) -> dict:
    shape = "tiny" if args.tiny else REAL_SHAPES[layout]
    frames = PAPER_FRAMES.get(layout, args.frames) if args.paper else args.frames  # the paper has no Qwen setting
    llm = load_model(checkpoint(args.root, shape, layout), device=args.device, dtype=args.dtype)
    features = llm.encode_clip(random_clip(frames))
    methods = [name for name in args.methods.split(",") if runnable(name, layout)]
    qwen = layout.startswith("qwen")
    options = {name: (TINY_OPTIONS.get(name, {}) if args.tiny else {}) for name in methods}
    runs: dict[str, list[dict]] = {name: [] for name in methods}
    for round_ in range(args.repeat + 1):  # round 0 warms up
        for name in methods:
            figures = measure(llm, features, name, args.ratio, options[name], measure_qwen if qwen else _measure)
            if round_:
                runs[name].append(figures)
    rows = {}
    for name, figures in runs.items():
        median = {key: statistics.median(f[key] for f in figures) for key in ("prune_s", "prefill_s", "tflops")}
        median["total_s"] = statistics.median(f["prune_s"] + f["prefill_s"] for f in figures)
        peaks = [f["peak_mb"] for f in figures if f["peak_mb"] is not None]
        rows[name] = {**median, "peak_mb": max(peaks) if peaks else None, "stages": figures[-1]["stages"],
                      "in_llm": is_in_llm(name), "kind": kind_of(name)}
    grid = list(features.grid)
    visual = features.features.shape[0] * grid[0] * grid[1]  # Qwen-VL: temporal groups of 2 frames
    return {"layout": layout, "frames": frames, "grid": grid, "visual": visual,
            "encode_s": features.encode_s, "methods": rows,
            "device": str(llm.device), "dtype": str(llm.dtype).removeprefix("torch."), "shape": shape}


def verdict(report: dict) -> str:
    """Whether ForestPrune's prune + prefill is below every in-LLM method's."""
    rows = report["methods"]
    inside = {name: row["total_s"] for name, row in rows.items() if row["in_llm"]}
    if "forestprune" not in rows or not inside:
        return "(needs forestprune and an in-LLM method)"
    ours = rows["forestprune"]["total_s"]
    best = min(inside, key=inside.get)
    below = all(ours < total for total in inside.values())
    return (f"forestprune prune+prefill {1000 * ours:.0f} ms is {'below' if below else 'NOT below'} every in-LLM "
            f"method's (fastest: {best} {1000 * inside[best]:.0f} ms; forestprune / {best} = {ours / inside[best]:.2f})")


def table(report: dict) -> str:
    """A markdown table of one layout's report."""
    grid = report["grid"]
    lines = [
        f"{report['layout']} layout, {report['frames']} frames, {report['visual']} visual tokens ({grid[0]}x{grid[1]} "
        f"a frame or temporal group), ratio {ARGS.ratio:g}, "
        f"{report['shape']} shape, {report['device']} {report['dtype']}, encode {report['encode_s']:.2f} s (once)",
        "",
        "| method | visual tokens in the LLM | prune ms | prefill ms | prune+prefill ms | TFLOPs | peak MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in report["methods"].items():
        parts = [f"{s['visual']} from layer {s['from_layer']}" for s in row["stages"]]
        first = row["stages"][0]["visual"]
        entered_all = row["kind"] == "inside the LLM"
        parts[0] = f"{report['visual']} → {parts[0]}" if entered_all and first != report["visual"] else str(first)
        stages = " → ".join(parts)
        peak = "-" if row["peak_mb"] is None else f"{row['peak_mb']:.0f}"
        lines.append(f"| {name} | {stages} | {1000 * row['prune_s']:.1f} | {1000 * row['prefill_s']:.1f} | "
                     f"{1000 * row['total_s']:.1f} | {row['tflops']:.3g} | {peak} |")
    lines += ["", verdict(report)]
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto", help=AUTO_HELP)
    parser.add_argument("--frames", type=int, default=4, help="frames per clip (both layouts) unless --paper")
    parser.add_argument("--paper", action="store_true", help="the paper's 32 (onevision) / 64 (video) frames")
    parser.add_argument("--layouts", default="onevision,video", help="onevision, video, qwen2.5-vl (comma-separated)")
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--ratio", type=float, default=0.9)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny checkpoint (a quick check)")
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "forestprune-bench")
    parser.add_argument("--json", type=Path, help="also write the reports here")
    return parser.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()
    torch.manual_seed(0)
    reports = []
    for layout_name in ARGS.layouts.split(","):
        reports.append(run_layout(ARGS, layout_name))
        print(table(reports[-1]), end="\n\n", flush=True)
    if ARGS.json:
        ARGS.json.write_text(json.dumps(reports, indent=1))
