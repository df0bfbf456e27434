"""`forestprune eval` against the same questions asked one `VideoLLM.answer` call at a time, in one process.

    python benchmarks/bench_eval.py [--shape llava-ov-0.5b|tiny] [--frames 4] [--max-new-tokens 16]
                                    [--per-item 6] [--json]

The benchmark: a jsonl bench of 4 videos x 3 questions over sample_videos/ (the three clips, and hard_cuts.mp4 a
second time under another name: a fourth video to encode), methods forestprune and gprune at ratios 0.7 and 0.9,
plus `none` (5 settings: 60 predictions), the paper protocol at --frames frames and --max-new-tokens (random
weights almost never emit an end token, so both paths generate about that many tokens per question). The model is a random
checkpoint of llava-onevision-qwen2-0.5b's real shape (`fpcli.devtools`, built once under
/tmp/forestprune-bench/), on the CPU, loaded once; its load is not timed.

eval: `prepare_eval` + `run_eval`, seconds per question = its wall time / 60. per-item: for --per-item predictions
evenly spaced over the same plan (so over videos and settings; all of them with --per-item 0), what
`forestprune ask` does per item: sample the video, then `VideoLLM.answer` with the same prompt, protocol settings
and generation; seconds per question = their mean. Half of the per-item calls run before eval and half after, so a change in the machine's
load during the run shows in both. Counted on both paths: vision-tower passes (calls of `VideoLLM.encode`) and
prefix prefills (the system prompt + visual tokens through the LLM: `ClipSession` prefix prefills).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fpcli.eval import EvalRequest, build_prompt, prepare_eval, run_eval  # noqa: E402
from fpcli.eval.loop import generation_of  # noqa: E402
from fpcli.eval.plan import plan_run  # noqa: E402

SAMPLES = ROOT / "sample_videos"
VIDEOS = {"hard_cuts": "hard_cuts.mp4", "moving_object": "moving_object.mp4", "scene_returns": "scene_returns.mp4",
          "hard_cuts_again": "hard_cuts.mp4"}
QUESTIONS = ["What happens in the video?", "How many scenes are there?", "What moves first?"]
METHODS, RATIOS = ("none", "forestprune", "gprune"), (0.7, 0.9)
CACHE = Path("/tmp/forestprune-bench")


def checkpoint(shape: str) -> Path:
    """The random checkpoint of `shape`, built once (a folder with its weights is reused)."""
    from fpcli.devtools.tiny_checkpoint import build_tiny_checkpoint

    directory = CACHE / f"{shape}-onevision"
    if not (directory / "model.safetensors").exists() and not list(directory.glob("model*.safetensors")):
        print(f"building the random {shape} checkpoint in {directory} ...", file=sys.stderr)
        build_tiny_checkpoint(directory, layout="onevision", shape=shape)
    return directory


def write_bench(root: Path) -> Path:
    (root / "clips").mkdir(parents=True)
    rows = []
    for name, sample in VIDEOS.items():
        (root / "clips" / f"{name}.mp4").symlink_to(SAMPLES / sample)
        for q, question in enumerate(QUESTIONS):
            rows.append({"id": f"{name}-{q}", "video": f"clips/{name}.mp4", "question": question,
                         "options": ["a person", "a square", "nothing", "a car"], "answer": q % 4})
    path = root / "bench.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


class Counting:
    """Counts vision-tower passes and prefix prefills of a loaded model, whatever path calls them."""

    def __init__(self, llm) -> None:
        from fpcli.model.llava.session import ClipSession

        self.llm, self.encodes, self.prefixes = llm, 0, 0
        encode, prefix = llm.encode, ClipSession._prefill_prefix

        def counted_encode(*args, **kw):
            self.encodes += 1
            return encode(*args, **kw)

        def counted_prefix(session, *args, **kw):
            self.prefixes += 1
            return prefix(session, *args, **kw)

        llm.encode = counted_encode
        ClipSession._prefill_prefix = counted_prefix

    def take(self) -> tuple[int, int]:
        counts = (self.encodes, self.prefixes)
        self.encodes = self.prefixes = 0
        return counts


class Held:
    def __init__(self, llm) -> None:
        self.llm = llm

    spec = property(lambda self: str(self.llm.path))
    layout = property(lambda self: self.llm.layout)

    def get(self):
        return self.llm


def per_item(llm, prepared, jobs) -> float:
    """Seconds of `jobs` (item, method, ratio) run as separate sample + answer calls."""
    from fpcli.video import sample_frames

    bp, request = prepared.bench_protocol, prepared.request
    start = time.perf_counter()
    for item, method, ratio in jobs:
        begun = time.perf_counter()
        clip = sample_frames(item.video, **bp.sampling(llm.layout, frames=request.frames))
        llm.answer(clip, build_prompt(item, bp, llm.layout), ratio=ratio, method=method,
                   prune_options=bp.prune_options.get(method), generation=generation_of(bp, request.max_new_tokens),
                   decode_s=time.perf_counter() - begun, time_instruction=bp.time_instruction,
                   system_prompt=bp.system_prompt)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="llava-ov-0.5b", help="checkpoint shape (tiny: a quick check)")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--per-item", type=int, default=6, help="per-item predictions timed (0: all 60)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args()

    from fpcli.model import load_model

    load_before = os.getloadavg()
    llm = load_model(checkpoint(args.shape), device="cpu")
    counting = Counting(llm)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_bench(Path(tmp) / "bench")
        request = EvalRequest("jsonl", data, Path(tmp) / "run", protocol="paper", methods=METHODS, ratios=RATIOS,
                              frames=args.frames, max_new_tokens=args.max_new_tokens)
        prepared = prepare_eval(request)
        plan = plan_run(prepared.items, list(METHODS), list(RATIOS))
        jobs = [(item, s.method, s.ratio) for g in plan.groups for s in g.sessions for item in s.items]
        timed = jobs if args.per_item == 0 else jobs[:: max(1, len(jobs) // args.per_item)][: args.per_item]
        half = len(timed) // 2
        item_s = per_item(llm, prepared, timed[:half])
        first_encodes, first_prefixes = counting.take()
        start = time.perf_counter()
        outcome = run_eval(prepared, Held(llm))
        eval_s = time.perf_counter() - start
        eval_encodes, eval_prefixes = counting.take()
        item_s += per_item(llm, prepared, timed[half:])
        item_encodes, item_prefixes = counting.take()
        item_encodes, item_prefixes = item_encodes + first_encodes, item_prefixes + first_prefixes
    questions = outcome.summary.questions
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads "
                   f"{__import__('torch').get_num_threads()}",
        "load_average": {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in os.getloadavg()]},
        "shape": args.shape, "frames": args.frames, "max_new_tokens": args.max_new_tokens,
        "videos": len(VIDEOS), "questions": questions,
        "eval": {"seconds": round(eval_s, 2), "per_question_s": round(eval_s / questions, 3),
                 "vision_passes": eval_encodes, "prefix_prefills": eval_prefixes,
                 "summary_counts": [outcome.summary.videos_encoded, outcome.summary.prefills]},
        "per_item": {"timed": len(timed), "seconds": round(item_s, 2), "per_question_s": round(item_s / len(timed), 3),
                     "vision_passes": item_encodes, "prefix_prefills": item_prefixes,
                     "vision_passes_for_all": len(jobs), "prefix_prefills_for_all": len(jobs)},
    }
    result["speedup_per_question"] = round(result["per_item"]["per_question_s"] / result["eval"]["per_question_s"], 2)
    if args.json:
        print(json.dumps(result))
        return
    e, p = result["eval"], result["per_item"]
    print(f"{result['machine']}; load average before {result['load_average']['before']}, after "
          f"{result['load_average']['after']}")
    print(f"{args.shape}, {len(VIDEOS)} videos x {len(QUESTIONS)} questions x 5 settings = {questions} predictions, "
          f"{args.frames} frames, {args.max_new_tokens} new tokens")
    print("| path | s / question | vision-tower passes | prefix prefills |")
    print("|---|---|---|---|")
    print(f"| eval | {e['per_question_s']:.3f} | {e['vision_passes']} | {e['prefix_prefills']} |")
    print(f"| per-item answer ({p['timed']} of {len(jobs)} timed) | {p['per_question_s']:.3f} | "
          f"{p['vision_passes']} ({len(jobs)} for all) | {p['prefix_prefills']} ({len(jobs)} for all) |")
    print(f"eval is {result['speedup_per_question']}x faster per question")


if __name__ == "__main__":
    main()
