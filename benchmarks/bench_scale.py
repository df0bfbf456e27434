"""`batch` single-process vs `batch --ray` at 1 and 2 workers: items/s, the overhead of Ray, the scaling.

    python benchmarks/bench_scale.py [--shape tiny|llava-ov-0.5b] [--workers 1,2] [--frames 4] [--max-new-tokens 8]

24 items on 8 videos (3 questions each), run by the real command in a fresh process per mode, so every figure is
what a user waits for: interpreter start, Ray start (a local instance), model load(s), decode, encode, answer.
Each mode writes its own results file; the benchmark checks they hold the same answers and token counts.
`--shape tiny` uses the tests' tiny random checkpoint; `--shape llava-ov-0.5b` a random-weight checkpoint of
llava-onevision-qwen2-0.5b's real sizes (fpcli.devtools), about 3 GB, built once into the cache folder. `--gpus-per-worker 1` with `--device
cuda` measures GPU workers where there are GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from test_cli_run import write_clip  # noqa: E402  (the tests' clips: moving gradients)

from fpcli.devtools.tiny_checkpoint import SHAPES, build_tiny_checkpoint  # noqa: E402

VIDEOS, QUESTIONS = 8, 3
MEASURED = ("timing_s", "peak_memory_mb")


def write_jobs(root: Path) -> Path:
    items = []
    for v in range(VIDEOS):
        write_clip(root / f"v{v}.mp4", frames=8 + v)
        items += [{"id": f"v{v}q{q}", "video": f"v{v}.mp4", "question": f"Question {q} about video {v}?"}
                  for q in range(QUESTIONS)]
    jobs = root / "jobs.jsonl"
    jobs.write_text("".join(json.dumps(item) + "\n" for item in items))
    return jobs


def run_mode(jobs: Path, checkpoint: Path, out: Path, common: list[str], ray: list[str]) -> float:
    """Wall seconds of one `forestprune batch` in a fresh process."""
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "fpcli", "batch", str(jobs), "--model", str(checkpoint), "--out", str(out),
               "--quiet", *common, *ray]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return wall


def answers(out: Path) -> dict[str, dict]:
    records = (json.loads(line) for line in out.read_text().splitlines())
    return {r["id"]: {k: v for k, v in r.items() if k not in MEASURED} for r in records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--workers", default="1,2", help="worker counts to run with --ray, comma-separated")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gpus-per-worker", default="0")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "forestprune-bench-scale")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    checkpoint = args.cache / f"checkpoint-{args.shape}"
    if not (checkpoint / "config.json").exists():
        build_tiny_checkpoint(checkpoint, shape=args.shape)
    jobs = write_jobs(args.cache)
    items = VIDEOS * QUESTIONS
    # --no-cache: every mode decodes and encodes its clips, as a first run does (a warm feature cache would serve
    # the later modes the first one's features)
    common = ["--frames", str(args.frames), "--max-new-tokens", str(args.max_new_tokens), "--device", args.device,
              "--no-cache"]
    modes = [("single process", [])] + [
        (f"--ray, {w} worker(s)", ["--ray", "--workers", w, "--gpus-per-worker", args.gpus_per_worker])
        for w in args.workers.split(",")
    ]
    print(f"{items} items on {VIDEOS} videos, {args.shape} checkpoint, {args.frames} frames, "
          f"{args.max_new_tokens} new tokens, {args.device}")
    print(f"| mode | wall s | items/s | vs single process |\n| --- | ---: | ---: | ---: |")
    reference, single = None, None
    for name, ray in modes:
        out = args.cache / f"results-{len(ray)}-{ray[2] if ray else 0}.jsonl"
        wall = run_mode(jobs, checkpoint, out, common, ray)
        found = answers(out)
        if reference is None:
            reference, single = found, wall
        elif found != reference:
            raise SystemExit(f"{name}: results differ from the single-process run")
        print(f"| {name} | {wall:.2f} | {items / wall:.2f} | {(wall - single) / single:+.1%} |", flush=True)


if __name__ == "__main__":
    main()
