"""The settings an evaluation run was made with (fpcli.recorded_settings): settings.json in the run directory, the same
record on each prediction, compared when the run resumes and when run directories merge.

A run directory holds every method x ratio of one benchmark, so its record has the run's settings (model and
checkpoint, layout, dtype, protocol, sampling and prompts of the benchmark under that protocol, answer length,
temperature, seed) and the protocol's fixed method options; each prediction adds its own method, ratio and
`method_options`. Resuming with a different one is exit 2 (a 4-frame `none` row must never be the reference of
6-frame pruned rows). Merging compares every setting but the shard; run directories of different benchmarks
(Table 1) compare only the settings a protocol does not set per benchmark.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from fpcli.eval.errors import EvalError
from fpcli.eval.protocols import BenchProtocol, Protocol
from fpcli.eval.rundir import PREDICTIONS, RUN, SUMMARY
from fpcli.jsonl import replace_file
from fpcli.recorded_settings import PredictionSettings, check_same

SETTINGS_FILE = "settings.json"
EVAL_RESTART = "give a new --out to keep both, or add --force-new to start this run directory over"
PER_BENCH = ("frames", "fps", "index_rule", "prompts", "max_new_tokens", "method_options")


def eval_settings(protocol: Protocol, bench: BenchProtocol, model_part: dict[str, Any], frames: Optional[int] = None,
                  max_new_tokens: Optional[int] = None) -> dict[str, Any]:
    """The record of a run of `bench` under `protocol` by the model that `model_part` names (model, checkpoint,
    layout, dtype); `frames` and `max_new_tokens`: the request's, replacing the protocol's when given."""
    layout = model_part["layout"]
    prompts = {"prompt_style": bench.prompt_style, "pre_prompt": bench.pre_prompt,
               "post_prompt": bench.post_prompt_for(layout), "system_prompt": bench.system_prompt,
               "time_instruction": bench.time_instruction, "strip_question": bench.strip_question}
    return PredictionSettings(
        **model_part, frames=frames or bench.frames.get(layout), fps=bench.fps.get(layout),
        index_rule=bench.index_rule, method_options={m: dict(o) for m, o in bench.prune_options.items()},
        protocol=protocol.name, prompts=prompts, max_new_tokens=max_new_tokens or bench.max_new_tokens,
        temperature=0.0, seed=protocol.seed,
    ).to_dict()


def read_settings(run_dir: Path) -> Optional[dict[str, Any]]:
    """settings.json of `run_dir`, None where there is none (a new directory, or one made before it existed)."""
    path = run_dir / SETTINGS_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise EvalError(f"cannot be read ({' '.join(str(err).split())[:200]})", path) from None


def open_settings(run_dir: Path, settings: dict[str, Any]) -> None:
    """Check that `run_dir` was made with `settings` (SettingsChanged, exit 2) and record them there."""
    check_same(read_settings(run_dir), settings, where=f"the run in {run_dir}", restart=EVAL_RESTART)
    run_dir.mkdir(parents=True, exist_ok=True)
    replace_file(run_dir / SETTINGS_FILE, (json.dumps(settings, indent=2, ensure_ascii=False) + "\n").encode())


def check_merge(run_dirs: list[Path], benches: list[str]) -> None:
    """Refuse (exit 2) to merge run directories made with different settings; the shard is not one, and runs of
    different benchmarks differ in what the protocol sets per benchmark."""
    first = read_settings(run_dirs[0])
    for run_dir, bench in zip(run_dirs[1:], benches[1:]):
        ignore = PER_BENCH if bench != benches[0] else ()
        check_same(first, read_settings(run_dir), where=f"the run in {run_dirs[0]}", now=f"the run in {run_dir} has",
                   ignore=ignore, restart="merge only runs made with the same settings (shards of one run, or "
                   "benchmarks run alike)")


def start_over(run_dir: Path) -> None:
    """--force-new: remove what a run wrote in `run_dir` (predictions, counters, summary, settings)."""
    for name in (PREDICTIONS, RUN, SUMMARY, SETTINGS_FILE):
        (run_dir / name).unlink(missing_ok=True)
