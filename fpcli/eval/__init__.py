"""fpcli.eval: benchmarks, protocols, answer parsing and scoring, run directories, and the model loop over them.

    from fpcli.eval import load_bench, get_protocol, build_prompt, parse_response
    items = load_bench("mvbench", "~/data/MVBench")          # list[EvalItem]
    bp = get_protocol("paper").for_bench("mvbench")          # BenchProtocol: frames, prompts, parser...
    text = build_prompt(items[0], bp, layout="video")        # what the model gets after the video
    parsed = parse_response(items[0], bp, "(B) the man", method="forestprune", ratio=0.9)

    prepared = prepare_eval(EvalRequest("mvbench", data, out=run_dir))   # every check, no model
    outcome = run_eval(prepared, model)      # the model loop (fpcli.eval.loop.run_video per video)
"""

from fpcli.eval.benches import BENCHES, Bench, get_bench, load_bench
from fpcli.eval.errors import EvalError, EvalInputError
from fpcli.eval.items import EvalItem, missing_videos
from fpcli.eval.loop import Counts, run_video
from fpcli.eval.parsing import Parsed, parse_response
from fpcli.eval.plan import RunPlan, plan_run, prediction_key
from fpcli.eval.plot import plot_accuracy
from fpcli.eval.prompts import build_prompt
from fpcli.eval.protocols import PROTOCOLS, BenchProtocol, Protocol, get_protocol
from fpcli.eval.run import (
    DEFAULT_METHODS, DEFAULT_PROTOCOL, DEFAULT_RATIOS, EvalOutcome, EvalRequest, ModelSource, PreparedRun, merge_runs,
    prepare_eval, run_eval,
)
from fpcli.eval.rundir import RunDir, RunInfo, RunSummary, failure_record, prediction_record, summarize, write_summary
from fpcli.eval.scoring import GroupScore, score_groups
from fpcli.eval.shard import Shard, parse_shard, shard_items
from fpcli.eval.table1 import Table1, build_table1

__all__ = [
    "BENCHES", "DEFAULT_METHODS", "DEFAULT_PROTOCOL", "DEFAULT_RATIOS", "PROTOCOLS", "Bench", "BenchProtocol", "Counts",
    "EvalError", "EvalInputError", "EvalItem", "EvalOutcome", "EvalRequest", "GroupScore", "ModelSource",
    "Parsed", "PreparedRun", "Protocol", "RunDir", "RunInfo", "RunPlan", "RunSummary", "Shard", "Table1",
    "build_prompt", "build_table1", "failure_record", "get_bench", "get_protocol", "load_bench", "merge_runs",
    "missing_videos", "parse_response", "parse_shard", "plan_run", "plot_accuracy", "prediction_key",
    "prediction_record", "prepare_eval", "run_eval", "run_video", "score_groups", "shard_items", "summarize",
    "write_summary",
]
