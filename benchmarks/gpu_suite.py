"""The project's GPU workload in one command: tests on CUDA, selection times, real-shape models, the CLI end to end.

    python benchmarks/gpu_suite.py --out DIR [--budget-s 480]     # on a CUDA machine
    python benchmarks/gpu_suite.py --out DIR --smoke              # the same steps at tiny shapes on the CPU (< 1 min)

It writes DIR/report.md (a table per part; its first line says that the models are random weights at real shapes,
and which machine, date and versions) and DIR/report.json (the same figures). The parts:

  tests      the suite's CUDA tests (the test files that ask `torch.cuda.is_available()`, tests named cuda or device:
             forest, every pre-LLM method, VisionZip, loading, and tests/test_cuda_pipeline.py's bf16 and fp32 runs),
             pass/fail counts from pytest's junit XML
  selection  every pre-LLM method of the fpcli.prune registry (so a method registered later is timed too) on
             64x196 and 32x196 tokens x 3584 (LLaVA-Video/OV-7B's pooled grids) and 512x169 (the Table 2 setting):
             CUDA events on a GPU, perf_counter on the CPU, median of several calls after a warm-up
  llava      a random-weight LLaVA-Video-7B (bfloat16, sdpa) at 64 frames: encode (the tower batches the frames),
             then for none and every method (fpcli.model.methods.method_names(), pre-LLM and in-LLM) at ratio 0.9:
             prune, prefill, generate, prefill TFLOPs and peak memory; then the Table 2 setting, 512 frames at a
             budget of 10816 visual tokens: time, peak memory, and whether it fits (an OOM is recorded, not raised)
  qwen       the same at Qwen2.5-VL-7B's shape, 2 fps over a 60 s clip (120 frames, 60 temporal groups)
  cli        `forestprune ask` (3 sample videos) and `forestprune eval` (a generated 12-question jsonl over
             sample_videos/, every method at 0.9 and none): wall time per question, feature cache cold then warm
             (a temporary cache directory)

Each part runs in its own process under its own time limit (its share of --budget-s, what earlier parts left
unused carried forward), writing its figures as it goes: a part that fails, hangs or runs out of time is recorded
with its error and its figures so far, and the next part runs. The checkpoints are built by fpcli.devtools under
--checkpoints (default <tmp>/forestprune-gpu-suite, outside --out: 2 x 16 GB; random weights drawn on the GPU in
seconds, writing them takes longer) and kept there, so a second run on the same machine starts at once.

On a bare GPU machine (no network): the suite needs PyAV, which such an image may lack. Download its wheel on a
machine with the network, beside the code, for the GPU machine's Python (3.12 here):

    pip download av --only-binary :all: --python-version 3.12 --platform manylinux_2_28_x86_64 -d wheels/

and start the device command with `pip install --no-index wheels/av-*.whl && python benchmarks/gpu_suite.py --out
"$OUT/gpu-report"` (the wheels/ folder travels with the working tree; $OUT is what comes back). The suite checks its imports before anything else and names what is missing, with that command.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# import name -> distribution name, for the message
REQUIRED = {"torch": "torch", "transformers": "transformers", "safetensors": "safetensors", "tokenizers": "tokenizers",
            "av": "av", "numpy": "numpy", "PIL": "pillow", "typer": "typer", "rich": "rich", "yaml": "pyyaml",
            "pyarrow": "pyarrow", "pytest": "pytest", "hypothesis": "hypothesis"}  # fmt: skip
PARTS = ("tests", "selection", "llava", "qwen", "cli")
REPORT_RESERVE_S = 5.0  # kept back from the parts for writing the report
QUESTION = "What is happening in this video? Describe the main events."
RATIO = 0.9
CUDA_TESTS = "cuda or device"  # pytest -k over the test files that ask for CUDA
SAMPLE_VIDEOS = ("hard_cuts.mp4", "moving_object.mp4", "scene_returns.mp4")


@dataclass(frozen=True)
class Setting:
    """What the suite runs: the real shapes on a GPU, or the same steps at tiny shapes on the CPU (--smoke)."""

    device: str
    budget_s: float
    shares: dict[str, float]  # each part's share of the budget
    selection_shapes: tuple[tuple[int, int, int], ...]  # (T, N, D) of the features
    selection_repeat: int
    llava_shape: str  # fpcli.devtools shape, video layout
    llava_frames: int
    table2_frames: int
    table2_budget: int  # visual tokens kept
    table2_methods: tuple[str, ...]
    qwen_shape: str
    qwen_fps: float
    qwen_seconds: float
    frame_size: tuple[int, int]  # random frames' H, W before the model's resize
    cli_shape: str  # the CLI part's checkpoint (video layout)
    cli_frames: int
    cli_max_new_tokens: int  # short: 4 processes and 2 x 12 x 11 answers must fit the part's share
    max_new_tokens: int
    method_options: dict[str, dict[str, int]] = field(default_factory=dict)  # options a method needs at this shape


# The paper's Table 2: 512 frames of 13x13 tokens, 10816 kept.
GPU = Setting(device="cuda", budget_s=480.0, shares={"tests": 0.1, "selection": 0.1, "llava": 0.33, "qwen": 0.22,
                                                     "cli": 0.25},
              selection_shapes=((64, 196, 3584), (32, 196, 3584), (512, 169, 3584)),
              selection_repeat=5, llava_shape="llava-video-7b", llava_frames=64, table2_frames=512,
              table2_budget=10816, table2_methods=("none", "forestprune"), qwen_shape="qwen2.5-vl-7b", qwen_fps=2.0,
              qwen_seconds=60.0, frame_size=(360, 640), cli_shape="llava-video-7b", cli_frames=32, cli_max_new_tokens=4,
              max_new_tokens=16)  # fmt: skip
# tiny-deep: 4 decoder layers, so the in-LLM methods run at their default layers as on the real models (the two-stage
# methods' in-LLM layers, 18 and 20 of the real 28, at layer 2); a budget of 98
# of 16 x 7x7 tokens keeps Table 2's 12.5%. On the CPU the process starts (torch, transformers) weigh most: the parts
# that start the most processes get the most time.
SMOKE = Setting(device="cpu", budget_s=170.0, shares={"tests": 0.2, "selection": 0.08, "llava": 0.18, "qwen": 0.14,
                                                      "cli": 0.4},
                selection_shapes=((8, 16, 32), (4, 16, 32), (16, 9, 32)),
                selection_repeat=3, llava_shape="tiny-deep", llava_frames=8, table2_frames=16,
                table2_budget=98, table2_methods=("none", "forestprune"), qwen_shape="tiny-deep", qwen_fps=2.0,
                qwen_seconds=4.0, frame_size=(48, 80), cli_shape="tiny-deep", cli_frames=4, cli_max_new_tokens=2,
                max_new_tokens=2, method_options={"holitom": {"layer": 2}, "flashvid": {"layer": 2}})  # fmt: skip


def missing_packages() -> list[str]:
    """The distributions of REQUIRED that cannot be imported here."""
    return [dist for name, dist in REQUIRED.items() if importlib.util.find_spec(name) is None]


# ---- the parts (each runs in a child process: `--part NAME`) ----


class PartLog:
    """A part's figures, rewritten to its JSON file after every step, so a part stopped midway keeps them."""

    def __init__(self, path: Path) -> None:
        self.path, self.data = path, {}

    def put(self, key: str, value) -> None:
        self.data[key] = value
        self.path.write_text(json.dumps(self.data, indent=1, default=str))


def _sync_timer(device):
    """A function running `fn` once and returning its seconds: CUDA events on a GPU, perf_counter on the CPU."""
    import torch

    if device.type == "cuda":

        def timed(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000

        return timed

    def timed(fn):
        begin = time.perf_counter()
        fn()
        return time.perf_counter() - begin

    return timed


def part_tests(setting: Setting, out: Path, log: PartLog, deadline: float) -> None:
    """pytest over the test files that ask for CUDA, the tests named cuda or device; counts from junit XML."""
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py")
                   if "torch.cuda.is_available()" in p.read_text())  # fmt: skip
    junit = out / "tests-junit.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", "-k",
               CUDA_TESTS, *files]  # fmt: skip
    log.put("command", " ".join(command))
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=max(1.0, deadline - time.time()))
    suites = ElementTree.parse(junit).getroot().iter("testsuite")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failed = []
    for suite in suites:
        for key in counts:
            counts[key] += int(suite.get(key, 0))
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(f"{case.get('classname')}::{case.get('name')}")
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    log.put("files", files)
    log.put("counts", {"selected": counts["tests"], "passed": passed, "failed": counts["failures"],
                       "errors": counts["errors"], "skipped": counts["skipped"]})  # fmt: skip
    log.put("failed_tests", failed)
    log.put("pytest_tail", done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "")


def synthetic_features(t: int, n: int, d: int, device, dtype):
    """Video-like features [T, N, D]: content drifting slowly within scenes of 32 frames, a new scene after each."""
    import torch

    gen = torch.Generator(device=device).manual_seed(0)
    scenes = torch.randn((t + 31) // 32, 1, n, d, generator=gen, device=device)  # [S, 1, N, D]
    drift = 0.15 * torch.randn(t, n, d, generator=gen, device=device)  # [T, N, D]
    base = scenes.expand(-1, 32, -1, -1).reshape(-1, n, d)[:t]  # [T, N, D]
    noise = 0.2 * torch.randn(t, n, d, generator=gen, device=device)
    return (base + drift.cumsum(0) * 0.1 + noise).to(dtype)


def part_selection(setting: Setting, out: Path, log: PartLog, deadline: float) -> None:
    """Median selection time of every registered pre-LLM method at each of setting.selection_shapes."""
    import torch

    from fpcli.model.checkpoint import resolve_device, resolve_dtype
    from fpcli.prune import available_methods, prune

    device = resolve_device(setting.device)
    dtype = resolve_dtype("auto", device)  # what the model hands the methods
    timed = _sync_timer(device)
    log.put("device", str(device))
    log.put("dtype", str(dtype).removeprefix("torch."))
    rows: dict[str, dict] = {}
    for t, n, d in setting.selection_shapes:
        shape = f"{t}x{n}x{d}"
        features = synthetic_features(t, n, d, device, dtype)
        gen = torch.Generator(device=device).manual_seed(1)
        extras = {"vision_attention": torch.softmax(torch.randn(t, n, generator=gen, device=device), dim=1),
                  "vision_keys": torch.randn(t, n, 72, generator=gen, device=device)}  # fmt: skip
        side = int(n**0.5)
        for method in available_methods():
            if time.time() > deadline:
                rows.setdefault(method, {})[shape] = {"error": "skipped: the part's time limit"}
                continue
            ratio = 0.0 if method == "none" else RATIO
            try:
                times, result = [], None
                for call in range(setting.selection_repeat + 1):  # call 0 warms up
                    box = {}
                    seconds = timed(lambda: box.update(r=prune(features, (side, side), ratio, method, extras=extras)))
                    result = box["r"]
                    if call:
                        times.append(seconds)
                    if time.time() + 2 * seconds > deadline:  # a slow method at a big shape: fewer calls
                        break
                rows.setdefault(method, {})[shape] = {"ms": 1000 * statistics.median(times or [seconds]),
                                                      "calls": len(times) or 1, "kept": int(result.k)}
            except Exception as exc:  # noqa: BLE001 - a method's failure is a figure of the report
                rows.setdefault(method, {})[shape] = {"error": _one_line(exc)}
            log.put("methods", rows)
        del features, extras
        if device.type == "cuda":
            torch.cuda.empty_cache()


def build_checkpoint(root: Path, shape: str, layout: str, device: str) -> Path:
    """root/shape-layout, built by fpcli.devtools on first use (into a staging folder, renamed when complete)."""
    from fpcli.devtools.tiny_checkpoint import build_tiny_checkpoint

    target = root / f"{shape}-{layout}"
    if (target / "config.json").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{shape}-{layout}-"))
    build_tiny_checkpoint(staging, layout=layout, shape=shape, device=device)
    os.rename(staging, target)
    return target


def random_clip(frames: int, fps: float, size: tuple[int, int]) -> SimpleNamespace:
    """`frames` random frames of `size` at `fps`, duck-typed like a VideoClip."""
    import numpy as np

    rng = np.random.default_rng(0)
    return SimpleNamespace(path=f"random-{frames}f.mp4", frames=rng.integers(0, 256, (frames, *size, 3), np.uint8),
                           indices=np.arange(frames), timestamps=np.arange(frames) / fps, duration=frames / fps,
                           warnings=[])  # fmt: skip


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def answer_row(llm, features, method: str, ratio: float, max_new_tokens: int, options: dict | None = None) -> dict:
    """One question about `features` with `method`: the session's stages, TFLOPs and peak memory; an error or an
    OOM as a row."""
    import torch

    from fpcli.model import GenerationConfig
    from fpcli.model.methods import ratio_for
    from fpcli.model.timing import peak_memory_mb, reset_peak_memory

    try:
        reset_peak_memory(llm.device)
        session = llm.start(features, ratio=ratio_for(method, ratio), method=method, options=options)
        session.check_fits(QUESTION)
        result = session.ask(QUESTION, GenerationConfig(max_new_tokens=max_new_tokens))
    except Exception as exc:  # noqa: BLE001 - an OOM or a refusal is what the report records
        if llm.device.type == "cuda":
            torch.cuda.empty_cache()
        return {"fits": False, "oom": _is_oom(exc), "error": _one_line(exc)}
    t = result.timing_s
    return {"fits": True, "prune_s": t.prune, "prefill_s": t.prefill, "generate_s": t.generate,
            "generated": result.tokens.generated, "prompt": result.tokens.prompt,
            "visual": [f"{s['visual']}@L{s['from_layer']}" for s in result.tokens.visual_in_llm],
            "tflops": result.prefill_tflops.after, "peak_mb": peak_memory_mb(llm.device)}  # fmt: skip


def model_part(setting: Setting, out: Path, log: PartLog, deadline: float, family: str, root: Path) -> None:
    """Encode one random clip, then every method at ratio 0.9 on it (and for LLaVA the Table 2 setting)."""
    import torch

    from fpcli.model import load_model
    from fpcli.model.methods import method_names
    from fpcli.model.timing import peak_memory_mb, reset_peak_memory

    if family == "llava":
        shape, layout, frames, fps = setting.llava_shape, "video", setting.llava_frames, 1.0
    else:
        shape, layout = setting.qwen_shape, "qwen2.5-vl"
        frames, fps = int(setting.qwen_fps * setting.qwen_seconds), setting.qwen_fps
    begin = time.perf_counter()
    path = build_checkpoint(root, shape, layout, setting.device)
    log.put("build_s", time.perf_counter() - begin)
    llm = load_model(path, device=setting.device, dtype="auto", attn="sdpa")
    log.put("model", {"shape": shape, "layout": layout, "device": str(llm.device),
                      "dtype": str(llm.dtype).removeprefix("torch."), "load_s": llm.load_s})  # fmt: skip
    llm.encode_clip(random_clip(2, fps, setting.frame_size))  # warm-up: the first calls of the tower's kernels
    reset_peak_memory(llm.device)
    features = llm.encode_clip(random_clip(frames, fps, setting.frame_size))
    visual = features.features.shape[0] * features.features.shape[1]
    log.put("encode", {"frames": frames, "fps": fps, "grid": list(features.grid), "visual": visual,
                       "encode_s": features.encode_s, "peak_mb": peak_memory_mb(llm.device)})  # fmt: skip
    answer_row(llm, features, "none", RATIO, 1)  # warm-up: the first calls of the LLM's kernels
    rows = {}
    for method in method_names():
        rows[method] = (answer_row(llm, features, method, RATIO, setting.max_new_tokens,
                                   setting.method_options.get(method)) if time.time() < deadline
                        else {"fits": None, "error": "skipped: the part's time limit"})  # fmt: skip
        log.put("methods", rows)
    if family != "llava":
        return
    del features
    if llm.device.type == "cuda":
        torch.cuda.empty_cache()
    reset_peak_memory(llm.device)
    table2: dict = {"frames": setting.table2_frames, "budget": setting.table2_budget}
    try:
        features = llm.encode_clip(random_clip(setting.table2_frames, 1.0, setting.frame_size))
    except Exception as exc:  # noqa: BLE001
        table2.update(encode={"fits": False, "oom": _is_oom(exc), "error": _one_line(exc)})
        log.put("table2", table2)
        return
    n = features.features.shape[0] * features.features.shape[1]
    # The model API takes a ratio, not a budget (yet): the ratio that keeps table2_budget of the clip's n tokens.
    ratio = 1 - setting.table2_budget / n
    table2.update(visual=n, ratio=ratio, encode={"encode_s": features.encode_s, "peak_mb": peak_memory_mb(llm.device)})
    log.put("table2", table2)
    for method in setting.table2_methods:
        table2.setdefault("methods", {})[method] = (
            answer_row(llm, features, method, ratio, setting.max_new_tokens) if time.time() < deadline
            else {"fits": None, "error": "skipped: the part's time limit"})  # fmt: skip
        log.put("table2", table2)


def jsonl_questions(path: Path) -> int:
    """A 12-question multiple-choice jsonl over the sample videos (4 questions each); returns the count."""
    asks = [("How many scenes are there?", ["1", "2", "3", "4"]), ("What is moving?", ["a square", "a circle"]),
            ("Which scene comes back?", ["the first", "the second", "none"]), ("Is it day or night?", ["day", "night"])]
    lines = [{"id": f"{video}-{i}", "video": str(REPO / "sample_videos" / video), "question": q, "options": options,
              "answer": "A", "category": f"q{i}"}
             for video in SAMPLE_VIDEOS for i, (q, options) in enumerate(asks)]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return len(lines)


def run_cli(args: list[str], cache: Path, timeout: float) -> tuple[float, subprocess.CompletedProcess]:
    env = dict(os.environ, FORESTPRUNE_CACHE=str(cache), PYTHONPATH=str(REPO))
    begin = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fpcli", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=max(1.0, timeout))  # fmt: skip
    return time.perf_counter() - begin, done


def part_cli(setting: Setting, out: Path, log: PartLog, deadline: float, root: Path) -> None:
    """`forestprune ask` and `eval` in fresh processes, cache cold then warm: wall seconds per question."""
    from fpcli.model.methods import method_names

    model = build_checkpoint(root, setting.cli_shape, "video", setting.device)
    common = ["--model", str(model), "--device", setting.device, "--frames", str(setting.cli_frames),
              "--max-new-tokens", str(setting.cli_max_new_tokens), "--json", "-q"]  # fmt: skip
    opts = [f"--opt={name}={value}" for options in setting.method_options.values() for name, value in options.items()]
    methods = ",".join(method_names())
    with tempfile.TemporaryDirectory() as scratch:  # not under --out: the cache's features are no report
        cache, data = Path(scratch) / "cache", Path(scratch) / "questions.jsonl"
        questions = jsonl_questions(data)
        rows = {}
        for run in ("cold", "warm"):
            wall, done = run_cli(["ask", *(str(REPO / "sample_videos" / v) for v in SAMPLE_VIDEOS), QUESTION,
                                  *common], cache, deadline - time.time())  # fmt: skip
            records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
            load = sum(r["timing_s"]["load"] for r in records)
            rows[f"ask {run}"] = {"rc": done.returncode, "questions": len(records), "wall_s": wall, "load_s": load,
                                  "per_question_s": wall / max(1, len(records)),
                                  "cache": sorted({r["cache"] for r in records}),
                                  "error": done.stderr.strip().splitlines()[-1] if done.returncode else None}
            log.put("runs", rows)
        predictions = questions * len(method_names())  # none once, every other method at RATIO
        for run in ("cold", "warm"):
            wall, done = run_cli(["eval", "jsonl", "--data", str(data), "--out", str(Path(scratch) / f"run-{run}"),
                                  "--methods", methods, "--ratios", str(RATIO), *sorted(set(opts)), *common], cache,
                                 deadline - time.time())  # fmt: skip
            summary = json.loads(done.stdout) if done.stdout.strip() else {}
            answered = sum(g.get("n", 0) for g in summary.get("groups", []))
            rows[f"eval {run}"] = {"rc": done.returncode, "questions": answered, "expected": predictions,
                                   "wall_s": wall, "per_question_s": wall / max(1, answered),
                                   "videos_encoded": summary.get("videos_encoded"),
                                   "failed": summary.get("failed"),
                                   "error": done.stderr.strip().splitlines()[-1] if done.returncode else None}
            log.put("runs", rows)
    log.put("methods", method_names())


def run_part(name: str, setting: Setting, out: Path, deadline: float, root: Path) -> None:
    log = PartLog(out / "parts" / f"{name}.json")
    if name == "tests":
        part_tests(setting, out, log, deadline)
    elif name == "selection":
        part_selection(setting, out, log, deadline)
    elif name in ("llava", "qwen"):
        model_part(setting, out, log, deadline, name, root)
    else:
        part_cli(setting, out, log, deadline, root)


# ---- the parent: limits, isolation, the report ----


@dataclass
class PartOutcome:
    status: str  # ok | failed | timeout
    seconds: float
    limit_s: float
    error: str | None = None
    figures: dict = field(default_factory=dict)


def run_isolated(name: str, args, setting: Setting, limit_s: float, root: Path) -> PartOutcome:
    """`name` in a child process, killed at limit_s; its figures (complete or so far) and how it ended."""
    partfile = args.out / "parts" / f"{name}.json"
    partfile.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--part", name, "--out", str(args.out), "--checkpoints", str(root),
               "--deadline", str(time.time() + limit_s - 2), *(["--smoke"] if args.smoke else [])]  # fmt: skip
    begin = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=limit_s)
        status = "ok" if done.returncode == 0 else "failed"
        error = None if done.returncode == 0 else (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    except subprocess.TimeoutExpired:
        status, error = "timeout", f"stopped at its limit of {limit_s:.0f} s"
    figures = json.loads(partfile.read_text()) if partfile.exists() else {}
    return PartOutcome(status, time.perf_counter() - begin, limit_s, error, figures)


def machine() -> dict:
    import torch
    import transformers

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"host": platform.node(), "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "gpu": gpu, "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "transformers": transformers.__version__,
            "load_average_start": load}  # fmt: skip


def _f(value, digits: int = 1, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def _status(outcome: dict) -> str:
    error = f": {outcome['error']}" if outcome.get("error") else ""
    return f"{outcome['status']} in {outcome['seconds']:.1f} s (limit {outcome['limit_s']:.0f} s){error}"


def markdown(report: dict) -> str:
    m = report["machine"]
    where = f"{m['gpu']} (CUDA {m['cuda']})" if m["gpu"] else f"CPU only ({m['cpus']} cores)"
    lines = [
        f"Random weights at {'tiny' if report['smoke'] else 'real'} shapes (nothing downloaded; answers are noise, "
        f"costs are real); {where}, {m['host']}; {report['date']}; Python {m['python']}, torch {m['torch']}, "
        f"transformers {m['transformers']}; load average {_f(m['load_average_start'], 2)} at the start.",
        "",
        f"# forestprune GPU suite{' (--smoke)' if report['smoke'] else ''}",
        "",
        f"Total {report['seconds']:.1f} s of a {report['budget_s']:.0f} s budget.",
    ]
    parts = report["parts"]
    p = parts["tests"]
    lines += ["", "## Tests on the device", "", _status(p), ""]
    counts = p["figures"].get("counts")
    if counts:
        lines += ["| selected | passed | failed | errors | skipped |", "|---:|---:|---:|---:|---:|",
                  f"| {counts['selected']} | {counts['passed']} | {counts['failed']} | {counts['errors']} | "
                  f"{counts['skipped']} |"]  # fmt: skip
        lines += [f"- failed: `{name}`" for name in p["figures"].get("failed_tests", [])]
    p = parts["selection"]
    lines += ["", "## Selection time of the pre-LLM methods (ms, median)", "", _status(p), ""]
    rows = p["figures"].get("methods", {})
    shapes = list(dict.fromkeys(shape for row in rows.values() for shape in row))
    if rows:
        lines += [f"{p['figures'].get('device')} {p['figures'].get('dtype')}, ratio {RATIO} (none: 0)", "",
                  "| method | " + " | ".join(shapes) + " |", "|---|" + "---:|" * len(shapes)]
        for method, row in rows.items():
            cells = [(_f(row[s]["ms"], 2) if "ms" in row[s] else row[s]["error"]) if s in row else "-" for s in shapes]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    for family, title in (("llava", "LLaVA-Video-7B shape"), ("qwen", "Qwen2.5-VL-7B shape")):
        p = parts[family]
        figures = p["figures"]
        lines += ["", f"## {title if not report['smoke'] else family + ' (tiny shape)'}: every method at ratio "
                  f"{RATIO}", "", _status(p), ""]  # fmt: skip
        if "encode" in figures:
            e, model = figures["encode"], figures["model"]
            lines += [f"{model['shape']} ({model['layout']}), {model['device']} {model['dtype']}, sdpa; "
                      f"{e['frames']} frames at {e['fps']:g} fps, grid {e['grid'][0]}x{e['grid'][1]}, "
                      f"{e['visual']} visual tokens; encode {e['encode_s']:.3f} s, peak {_f(e['peak_mb'], 0)} MB; "
                      f"load {model['load_s']:.1f} s, checkpoint build {figures.get('build_s', 0):.1f} s", ""]
        lines += model_table(figures.get("methods", {}))
        if "table2" in figures:
            t2 = figures["table2"]
            head = f"Table 2 setting: {t2['frames']} frames, budget {t2['budget']} visual tokens"
            if "ratio" in t2:
                head += (f" of {t2['visual']} (ratio {t2['ratio']:.4f}); encode {t2['encode']['encode_s']:.3f} s, "
                         f"peak {_f(t2['encode']['peak_mb'], 0)} MB")
            elif "error" in t2.get("encode", {}):
                head += f"; encode failed: {t2['encode']['error']}"
            lines += ["", head, ""] + model_table(t2.get("methods", {}))
    p = parts["cli"]
    lines += ["", "## `forestprune ask` and `eval` end to end (fresh processes, model load included)", "",
              _status(p), ""]  # fmt: skip
    runs = p["figures"].get("runs", {})
    if runs:
        lines += ["| run | exit | questions | wall s | s / question | model load s (in wall) | cache |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for name, r in runs.items():
            cache = ",".join(r.get("cache", [])) or f"videos encoded {r.get('videos_encoded')}"
            load = "-" if r.get("load_s") is None else f"{r['load_s']:.2f}"
            lines.append(f"| {name} | {r['rc']} | {r['questions']} | {r['wall_s']:.2f} | {r['per_question_s']:.3f} "
                         f"| {load} | {cache} |")
        lines += [f"- {name}: {r['error']}" for name, r in runs.items() if r.get("error")]
    return "\n".join(lines) + "\n"


def model_table(rows: dict) -> list[str]:
    if not rows:
        return []
    lines = ["| method | visual tokens in the LLM | prune ms | prefill ms | generate ms | TFLOPs | peak MB |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for method, r in rows.items():
        if not r.get("fits"):
            what = "OOM" if r.get("oom") else "did not run"
            lines.append(f"| {method} | {what}: {r.get('error')} | | | | | |")
            continue
        lines.append(f"| {method} | {' → '.join(str(v) for v in r['visual'])} | {_f(r['prune_s'], 1, 1000)} | "
                     f"{_f(r['prefill_s'], 1, 1000)} | {_f(r['generate_s'], 1, 1000)} | {r['tflops']:.3g} | "
                     f"{_f(r['peak_mb'], 0)} |")
    return lines


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="report folder (report.md, report.json)")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, the same steps")
    parser.add_argument("--budget-s", type=float, help=f"total time limit (default {GPU.budget_s:.0f} s, "
                        f"--smoke {SMOKE.budget_s:.0f} s)")  # fmt: skip
    parser.add_argument("--parts", default=",".join(PARTS), help="the parts to run, comma-separated")
    parser.add_argument("--checkpoints", type=Path, default=Path(tempfile.gettempdir()) / "forestprune-gpu-suite",
                        help="folder of the random checkpoints, built there on first use (default %(default)s)")
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)  # a child process: run one part
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    start = time.perf_counter()  # the budget counts from here: imports and the report included
    args = parse_args(argv)
    setting = SMOKE if args.smoke else GPU
    root = args.checkpoints
    if args.part:
        run_part(args.part, setting, args.out, args.deadline, root)
        return 0
    missing = missing_packages()
    if missing:
        print(f"Error: missing Python packages: {', '.join(missing)}. On a machine without network, install them "
              f"from wheels brought beside the code: pip install --no-index wheels/*.whl (for PyAV: pip download av "
              f"--only-binary :all: --python-version 3.12 --platform manylinux_2_28_x86_64 -d wheels/ beforehand)",
              file=sys.stderr)  # fmt: skip
        return 2
    parts = args.parts.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        print(f"Error: unknown part {unknown[0]!r}; parts: {', '.join(PARTS)}", file=sys.stderr)
        return 2
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("Error: no CUDA device here; --smoke runs the same steps on the CPU", file=sys.stderr)
        return 2
    budget = args.budget_s or setting.budget_s
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parts").mkdir(exist_ok=True)
    report = {"smoke": args.smoke, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "budget_s": budget, "machine": machine(), "setting": asdict(setting), "parts": {}}  # fmt: skip
    for i, name in enumerate(PARTS):
        if name not in parts:
            continue
        left = budget - REPORT_RESERVE_S - (time.perf_counter() - start)
        share = setting.shares[name] / sum(setting.shares[p] for p in PARTS[i:] if p in parts)
        limit = max(1.0, left * share)
        print(f"{name}: up to {limit:.0f} s", file=sys.stderr, flush=True)
        outcome = run_isolated(name, args, setting, limit, root)
        report["parts"][name] = asdict(outcome)
        print(f"{name}: {outcome.status} in {outcome.seconds:.1f} s", file=sys.stderr, flush=True)
    for name in PARTS:
        report["parts"].setdefault(name, asdict(PartOutcome("not run", 0.0, 0.0, "not in --parts")))
    report["seconds"] = time.perf_counter() - start
    (args.out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (args.out / "report.md").write_text(markdown(report))
    print(f"Wrote {args.out / 'report.md'} and report.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
