"""`forestprune ask` end to end in float32 and in bfloat16 on the CPU: what `--dtype auto` should pick there.

    python benchmarks/bench_dtype.py [--frames 8] [--rounds 2] [--tiny] [--root DIR] [--json FILE]

Each run is one `forestprune ask --json` in a fresh process (model load, decode, vision tower, ForestPrune at 0.9,
prefill, 8 greedy new tokens) on `sample_videos/moving_object.mp4`, with a random-weight checkpoint of
llava-onevision-qwen2-0.5b-ov's real sizes (`python -m fpcli.devtools tiny-checkpoint DIR --shape llava-ov-0.5b`,
built once under --root; `--tiny` uses the tests' tiny one to check the script in seconds). The two dtypes alternate
within every round (fp32, bf16, then bf16, fp32 in the next), so a change in the shared machine's load hits both.
Every run gets an empty feature cache of its own, so it pays the vision tower, and the features it stored are what
the bf16 / fp32 cosine similarity compares. Greedy answers are compared as token ids (the tiny tokenizer decodes
most of the real vocabulary's ids to nothing, so the text says little): after the timed rounds, each dtype's model
answers again in this process on its own dtype's stored features, and where the two first tokens differ the fp32
logits' margin between them says whether that is within bfloat16's rounding.
`uptime` is printed before and after: the figures are only comparable within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VIDEO = REPO / "sample_videos" / "moving_object.mp4"
QUESTION = "What is moving in this video?"
DTYPES = ("float32", "bfloat16")
STAGES = ("load", "decode", "encode", "prune", "prefill", "generate")


def checkpoint(root: Path, tiny: bool) -> Path:
    """The checkpoint under root, built on first use by the devtools CLI (the documented way)."""
    shape = "tiny" if tiny else "llava-ov-0.5b"
    target = root / f"{shape}-onevision"
    if not (target / "model.safetensors").exists():
        staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{shape}-"))
        subprocess.run([sys.executable, "-m", "fpcli.devtools", "tiny-checkpoint", str(staging), "--shape", shape],
                       check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        os.rename(staging, target)
    return target


def ask(model: Path, dtype: str, frames: int, cache: Path) -> dict:
    """One `forestprune ask --json` in a fresh process; its JSON record plus the process's wall time and CPU time
    (user + system: what the work cost, which a busy shared machine stretches far less than the wall time)."""
    env = dict(os.environ, FORESTPRUNE_CACHE=str(cache), PYTHONPATH=str(REPO))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = [sys.executable, "-m", "fpcli", "ask", str(VIDEO), QUESTION, "--model", str(model), "--device", "cpu",
               "--dtype", dtype, "--frames", str(frames), "--max-new-tokens", "8", "--json", "-q"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=True)
    record = json.loads(done.stdout)
    record["wall_s"] = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    record["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return record


def cached_features(cache: Path):
    """The features tensor of the one entry a cold ask stored in `cache`, in float32."""
    from safetensors.torch import load_file

    (entry,) = (cache / "features").glob("*.safetensors")
    return load_file(entry)["features"].float()


def greedy_check(model: Path, caches: dict[str, Path]) -> dict:
    """Each dtype's greedy answer ids on its own stored features, and the first token's fp32 logits compared."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    from fpcli.model import GenerationConfig, load_model
    from fpcli.model.clip_features import ClipFeatures
    from fpcli.model.generate import prefill

    ids, logits = {}, {}
    for dtype, cache in caches.items():
        (entry,) = (cache / "features").glob("*.safetensors")
        with safe_open(entry, framework="pt") as f:
            meta = json.loads(f.metadata()["meta"])  # the entry's ClipFeatures.meta()
        features = ClipFeatures.from_parts(load_file(entry), meta)
        llm = load_model(model, device="cpu", dtype=dtype)
        session = llm.start(features, ratio=0.9, method="forestprune")
        ids[dtype] = session.ask(QUESTION, GenerationConfig(max_new_tokens=8)).generated_ids
        prompt, at = session.prompt_ids(QUESTION)
        logits[dtype] = prefill(llm.model, session.embeds(prompt, at))[0][0].float()  # [V]
    first = {dtype: int(v.argmax()) for dtype, v in logits.items()}
    reference = logits["float32"]
    margin = float(reference[first["float32"]] - reference[first["bfloat16"]])  # 0 when they agree
    return {"ids": ids, "ids_agree": ids["float32"] == ids["bfloat16"], "first_agree": len(set(first.values())) == 1,
            "first_margin_fp32": margin, "logits_max_abs_diff": float((logits["bfloat16"] - reference).abs().max()),
            "logits_cosine": float(torch.nn.functional.cosine_similarity(logits["bfloat16"], reference, dim=0))}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny checkpoint (a quick check)")
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "forestprune-bench")
    parser.add_argument("--json", type=Path, help="also write the runs and the summary here")
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    model = checkpoint(args.root, args.tiny)
    print(f"start: {uptime()}", file=sys.stderr)
    runs: dict[str, list[dict]] = {dtype: [] for dtype in DTYPES}
    cosines = []
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            order = DTYPES if round_ % 2 == 0 else DTYPES[::-1]
            caches = {}
            for dtype in order:
                caches[dtype] = Path(scratch) / f"cache-{round_}-{dtype}"
                record = ask(model, dtype, args.frames, caches[dtype])
                runs[dtype].append(record)
                print(f"round {round_ + 1} {dtype}: wall {record['wall_s']:.2f} s, CPU {record['cpu_s']:.2f} s, "
                      f"{uptime()}", file=sys.stderr)
            import torch

            a, b = (cached_features(caches[dtype]).flatten(0, -2) for dtype in DTYPES)  # [T*N, D] each
            cosines.append(torch.nn.functional.cosine_similarity(a, b, dim=-1).min().item())
        print(f"end of the timed rounds: {uptime()}", file=sys.stderr)
        greedy = greedy_check(model, caches)
    summary = {dtype: {"wall_s": statistics.median(r["wall_s"] for r in rs),
                       "cpu_s": statistics.median(r["cpu_s"] for r in rs),
                       **{s: statistics.median(r["timing_s"][s] for r in rs) for s in STAGES}}
               for dtype, rs in runs.items()}  # fmt: skip
    print(f"`ask`, {args.frames} frames, {'tiny' if args.tiny else 'llava-ov-0.5b'} shape, CPU, medians of "
          f"{args.rounds} interleaved rounds (s)\n")
    print("| dtype | " + " | ".join(STAGES) + " | wall | process CPU |")
    print("|---|" + "---:|" * (len(STAGES) + 2))
    for dtype, row in summary.items():
        print(f"| {dtype} | " + " | ".join(f"{row[s]:.2f}" for s in (*STAGES, "wall_s", "cpu_s")) + " |")
    speedup = summary["float32"]["wall_s"] / summary["bfloat16"]["wall_s"]
    cpu_speedup = summary["float32"]["cpu_s"] / summary["bfloat16"]["cpu_s"]
    encode_speedup = summary["float32"]["encode"] / summary["bfloat16"]["encode"]
    print(f"\nbf16 speed-up: wall {speedup:.2f}x, process CPU time {cpu_speedup:.2f}x (encode {encode_speedup:.2f}x); "
          f"features' lowest per-token cosine "
          f"{min(cosines):.5f}; greedy ids {'agree' if greedy['ids_agree'] else 'differ'} "
          f"(fp32 {greedy['ids']['float32']}, bf16 {greedy['ids']['bfloat16']}); first-token logits: cosine "
          f"{greedy['logits_cosine']:.5f}, max |diff| {greedy['logits_max_abs_diff']:.3g}, fp32 margin between the two "
          f"first tokens {greedy['first_margin_fp32']:.3g}")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "summary": summary, "cosine_min": cosines, "greedy": greedy},
                                        indent=1))


if __name__ == "__main__":
    main()
