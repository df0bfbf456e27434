"""What the feature cache and one session per clip save: a cold ask, a warm ask (cache hit), 3 questions in a chat.

    python benchmarks/bench_cache.py               # a random checkpoint of llava-ov-0.5b's real shape (built once,
                                                   # kept in /tmp/forestprune-bench/), 8 frames
    python benchmarks/bench_cache.py --model DIR [--video FILE] [--frames 8] [--device cpu] [--dtype auto]
    python benchmarks/bench_cache.py --tiny        # the tests' tiny random checkpoint: checks the script runs

Cases, each in a fresh process with the model already loaded (loading is not timed), so no case inherits another's
warm caches or allocator state; the three run --rounds times, interleaved, so a load change on a shared machine
affects them alike:
  cold  empty feature cache: decode, vision tower, store, prune, prefill, generate one answer
  warm  the entry `cold` stored: load it, prune, prefill, generate (no decoding, no vision tower)
  chat  empty feature cache, then 3 questions through one session (the prefix is prefilled once); per question
Reported: seconds per stage and wall seconds; cold/warm, and 3 cold asks against the chat's 3 questions. The targets
(issue 14): warm at least 5x faster than cold; chat's 2nd and 3rd questions with no vision-tower time at all.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT / "sample_videos" / "moving_object.mp4"
QUESTIONS = ["What is moving in this video?", "What colour is the background?", "How many objects are there?"]
CASE_TIMEOUT_S = 1800
BENCH_DIR = Path("/tmp/forestprune-bench")


def _ask(session, question: str, generation, tower_calls: list[int]) -> dict:
    before, start = tower_calls[0], time.perf_counter()
    result = session.ask(question, generation)
    timing = result.timing_s
    return {"encode": timing.encode, "prune": timing.prune, "prefill": timing.prefill, "generate": timing.generate,
            "wall": time.perf_counter() - start, "tower_calls": tower_calls[0] - before, "answer": result.answer}


def run_case(args: argparse.Namespace) -> dict:
    """One case in this process: load (untimed), then the case's questions."""
    from fpcli.model import GenerationConfig, load_model
    from fpcli.model.cached_encode import features_for
    from fpcli.model.feature_cache import FeatureCache

    llm = load_model(args.model, device=args.device, dtype=args.dtype)
    generation = GenerationConfig(max_new_tokens=args.max_new_tokens)
    questions = QUESTIONS if args.case == "chat" else QUESTIONS[:1]
    tower_calls = [0]  # forward passes of the vision tower: what "no vision-tower time" is checked by
    llm.vision.tower.register_forward_hook(lambda *_: tower_calls.__setitem__(0, tower_calls[0] + 1))
    start = time.perf_counter()
    features = features_for(Path(args.video), {"num_frames": args.frames}, FeatureCache(Path(args.cache)), lambda: llm)
    session = llm.start(features, ratio=args.ratio, method=args.method)
    setup = {"cache": features.cache, "decode": features.decode_s, "encode": features.encode_s,
             "cache_load": features.cache_load_s, "wall": time.perf_counter() - start,
             "tower_calls": tower_calls[0]}  # fmt: skip
    asks = [_ask(session, question, generation, tower_calls) for question in questions]
    return {"case": args.case, "setup": setup, "asks": asks, "wall": setup["wall"] + sum(a["wall"] for a in asks)}


def _in_subprocess(args: argparse.Namespace, case: str, cache: Path) -> dict:
    command = [
        sys.executable, __file__, "--case", case, "--cache", str(cache), "--model", str(args.model),
        "--video", str(args.video), "--frames", str(args.frames), "--device", args.device, "--dtype", args.dtype,
        "--ratio", str(args.ratio), "--method", args.method, "--max-new-tokens", str(args.max_new_tokens),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=CASE_TIMEOUT_S)
    if done.returncode != 0:
        raise SystemExit(f"case {case} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def _row(name: str, setup: dict, ask: dict, wall: float) -> str:
    cells = [setup["decode"], setup["encode"], setup["cache_load"], ask["prune"], ask["prefill"], ask["generate"], wall]
    return f"| {name} | " + " | ".join(f"{v:.3f}" for v in cells) + " |"


def report(cold: dict, warm: dict, chat: dict) -> str:
    none = {"decode": 0.0, "encode": 0.0, "cache_load": 0.0}
    lines = [
        "| case | decode | encode | cache load | prune | prefill | generate | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        _row(f"cold ask ({cold['setup']['cache']})", cold["setup"], cold["asks"][0], cold["wall"]),
        _row(f"warm ask ({warm['setup']['cache']})", warm["setup"], warm["asks"][0], warm["wall"]),
    ]
    for i, ask in enumerate(chat["asks"]):
        first = i == 0
        wall = chat["setup"]["wall"] + ask["wall"] if first else ask["wall"]
        lines.append(_row(f"chat question {i + 1}", chat["setup"] if first else none, ask, wall))
    three_cold = 3 * cold["wall"]
    lines += [
        "",
        f"warm ask {cold['wall'] / warm['wall']:.1f}x faster than cold ({cold['wall']:.2f} s -> {warm['wall']:.2f} s); "
        f"3 questions: 3 cold asks {three_cold:.2f} s, one chat {chat['wall']:.2f} s "
        f"({three_cold / chat['wall']:.1f}x); chat questions 2-3: {sum(a['wall'] for a in chat['asks'][1:]):.2f} s "
        f"together, vision-tower passes {sum(a['tower_calls'] for a in chat['asks'][1:])} (clip setup: "
        f"{chat['setup']['tower_calls']}; warm ask: {warm['setup']['tower_calls']})",
    ]
    return "\n".join(lines)


def real_shape_checkpoint() -> Path:
    """The random llava-ov-0.5b-shaped checkpoint, built once into BENCH_DIR (atomically: a rename when complete)."""
    from fpcli.devtools.tiny_checkpoint import build_tiny_checkpoint

    final = BENCH_DIR / "llava-ov-0.5b-onevision"
    if not (final / "config.json").is_file():
        partial = BENCH_DIR / f".llava-ov-0.5b-onevision.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        build_tiny_checkpoint(partial, layout="onevision", shape="llava-ov-0.5b")
        os.replace(partial, final)
    return final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint directory or profile (default: the real-shape random 0.5B)")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny random checkpoint (a smoke run)")
    parser.add_argument("--video", default=str(VIDEO))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--ratio", type=float, default=0.9)
    parser.add_argument("--method", default="forestprune")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="cold, warm and chat this many times, interleaved")
    parser.add_argument("--case", choices=["cold", "warm", "chat"], help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args)))
        return
    if args.tiny and args.model:
        parser.error("give at most one of --model DIR and --tiny")
    name = "tiny-onevision" if args.tiny else args.model or "random llava-ov-0.5b shape"
    with tempfile.TemporaryDirectory(prefix="forestprune-bench-cache-") as scratch:
        if args.tiny:
            from fpcli.devtools.tiny_checkpoint import build_tiny_checkpoint

            args.model = build_tiny_checkpoint(Path(scratch) / "tiny", layout="onevision")
        elif not args.model:
            BENCH_DIR.mkdir(parents=True, exist_ok=True)
            args.model = real_shape_checkpoint()
        rounds = []
        for number in range(args.rounds):  # interleaved: a load change on a shared machine hits every case alike
            cache = Path(scratch) / f"cache-{number}"
            cold = _in_subprocess(args, "cold", cache)
            warm = _in_subprocess(args, "warm", cache)
            chat = _in_subprocess(args, "chat", Path(scratch) / f"chat-cache-{number}")
            rounds.append((cold, warm, chat))
    print(f"{name} · {args.frames} frames · {args.method} {args.ratio} · {args.device}, {args.dtype} · "
          f"{args.max_new_tokens} new tokens")  # fmt: skip
    for number, (cold, warm, chat) in enumerate(rounds, 1):
        print(f"\nround {number} of {len(rounds)}")
        print(report(cold, warm, chat))


if __name__ == "__main__":
    main()
