"""`forestprune eval BENCH --data DIR --out RUN_DIR`: a benchmark, methods x ratios, one model load, resumable.

The command parses, calls `fpcli.eval.prepare_eval` (every check of the request, before any model loads) and
`fpcli.eval.run_eval` (the model loop, into RUN_DIR), and renders the summary: a table shaped like the paper's
Table 1 on stdout (or the summary as one JSON object with --json), a progress bar over the questions with its
ETA and the running accuracy on stderr. `forestprune eval --merge RUN_DIR...` combines run directories (shards,
or benchmarks) into one summary. Exit code 0 when every question was scored, 1 when some could not be (missing
or broken videos, failed items: all recorded in predictions.jsonl), 2 for bad usage, 130 when interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from fpcli.cli import errors
from fpcli.cli.options import (
    DEFAULT_DEVICE,
    DEFAULT_PROTOCOL,
    GPU_DEFAULT,
    Attention,
    Attn,
    Config,
    Debug,
    Device,
    DType,
    DTypeOpt,
    EvalArgs,
    EvalBudgets,
    EvalData,
    EvalFrames,
    EvalJson,
    EvalLimit,
    EvalMaxNewTokens,
    EvalMerge,
    EvalMethods,
    EvalOut,
    EvalPlot,
    EvalProtocolOpt,
    EvalRatios,
    EvalShard,
    CacheMaxSize,
    ForceNew,
    LayoutOpt,
    Model,
    Opt,
    NoCache,
    ProtocolName,
    Quiet,
)
from fpcli.cli.failures import Failures
from fpcli.cli.on_ray import GpusPerWorker, RayAddress, Workers
from fpcli.cli.progress import Reporter
from fpcli.cli.runner import feature_cache, warn
from fpcli.cli.settings import parse_opts
from fpcli.cli.tables import print_whole
from fpcli.eval.rundir import BROKEN_VIDEO, MISSING_VIDEO
from fpcli.model.sampling import MAX_FRAMES
from fpcli.run.on_ray import RaySettings
from fpcli.run.recorded import Recorder
from fpcli.run.settings import MethodSetting, ModelSettings, plain
from fpcli.run.source import LazyModel

if TYPE_CHECKING:
    from fpcli.eval import EvalOutcome, RunDir, RunPlan, RunSummary, Table1


RETRYABLE_KINDS = (MISSING_VIDEO, BROKEN_VIDEO)  # failures a re-run can fix: the video may be there by then


def _names(value: Optional[str]) -> Optional[tuple[str, ...]]:
    return None if value is None else tuple(name.strip() for name in value.split(",") if name.strip())


def _method_options(pairs: Optional[list[str]], methods: tuple[str, ...]) -> dict[str, Any]:
    """--opt NAME=VALUE, typed and checked by the first of `methods` that takes NAME (exit 2 otherwise)."""
    try:
        return parse_opts(pairs, list(methods))
    except ValueError as exc:
        raise errors.usage_error(str(exc)) from exc


def _ratios(value: Optional[str]) -> Optional[tuple[float, ...]]:
    names = _names(value)
    if names is None:
        return None
    try:
        return tuple(float(name) for name in names)
    except ValueError:
        raise errors.usage_error(f"--ratios takes numbers separated by commas, got {value!r}") from None


def _counts(value: Optional[str], option: str, high: Optional[int] = None) -> Optional[tuple[int, ...]]:
    """'64,128' -> (64, 128): integers >= 1 (and <= high), exit 2 otherwise."""
    names = _names(value)
    if names is None:
        return None
    try:
        counts = tuple(int(name) for name in names)
    except ValueError:
        raise errors.usage_error(f"{option} takes integers separated by commas, got {value!r}") from None
    bad = [c for c in counts if c < 1 or (high is not None and c > high)]
    if bad or not counts:
        allowed = f"1..{high}" if high is not None else ">= 1"
        raise errors.usage_error(f"{option} takes integers in {allowed}, got {value!r}")
    return counts


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}"


def table1_view(table: Table1) -> Table:
    """Rows method x ratio; per benchmark its accuracy and Retain %; the average last (as the paper's Table 1)."""
    view = Table(title="Accuracy % (Retain % of none)", title_justify="left")
    view.add_column("Method")
    view.add_column("Ratio", justify="right")
    for bench in table.benches:
        view.add_column(table.titles[bench], justify="right")
    view.add_column("Avg.", justify="right")
    for row in table.rows:
        cells = [row.cells[bench] for bench in table.benches] + [row.average]
        shown = [f"{_percent(c.accuracy)} ({_percent(c.retain)})" if c.retain is not None else _percent(c.accuracy)
                 for c in cells]
        amount = "-" if row.method == "none" else f"{row.ratio:g}" if row.budget is None else f"{row.budget} tok"
        view.add_row(row.method, amount, *shown)
    return view


def _counts_line(summary: RunSummary) -> str:
    line = (f"videos encoded {summary.videos_encoded}, prefills {summary.prefills}, questions {summary.questions}, "
            f"failed {summary.failed}, missing videos {len(summary.missing_videos)}")
    return line + (f", broken videos {len(summary.broken_videos)}" if summary.broken_videos else "")


def _show(summary: RunSummary, json_output: bool, plot: Optional[Path]) -> int:
    """Print the summary (Table 1, or JSON), write the plot; the exit code: 1 when some question was not scored."""
    from fpcli.eval import plot_accuracy

    if json_output:
        print(json.dumps(summary.to_dict(), ensure_ascii=False), flush=True)
    else:
        out = Console(highlight=False, soft_wrap=True)
        print_whole(out, table1_view(summary.table1))
        out.print(_counts_line(summary), markup=False)
    if plot is not None:
        written = plot_accuracy(summary.table1, plot, model=summary.model)
        print(f"Wrote the plot of accuracy against ratio to {written}", file=sys.stderr)
    for video in summary.missing_videos:
        print(f"Missing video: {video}", file=sys.stderr)
    for video in summary.broken_videos:
        print(f"Unreadable video: {video}", file=sys.stderr)
    return errors.EXIT_OK if summary.failed == 0 else errors.EXIT_FAILURE


class _Bar:
    """The bar over this invocation's questions, labelled with the running accuracy."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.task = None
        self.scored = self.correct = self.failed = 0
        self.warned: set[tuple[str, str]] = set()
        self.failures = Failures()

    def planned(self, plan: RunPlan, run: RunDir) -> None:
        log = run.log
        if log.truncated:
            self.reporter.message(f"Dropped the cut-short last line of {log.path}; its prediction runs again.")
        if run.done or log.retrying:
            self.reporter.message(f"Resuming {run.path}: {len(run.done)} predictions done, {log.retrying} failed "
                                  f"one(s) to retry; {plan.questions} to run on {plan.encodes} video(s).")
        else:
            self.reporter.message(f"Writing {plan.questions} predictions on {plan.encodes} video(s) to {run.path}.")
        self.task = self.reporter.task("Eval", total=plan.questions)

    def record(self, record: dict[str, Any]) -> None:
        # a video's warnings once, however many of its predictions carry them
        new = [w for w in record.get("warnings", []) if (w, record["video"]) not in self.warned]
        self.warned.update((w, record["video"]) for w in new)
        warn({"warnings": new, "video": record["video"]})
        if record["status"] == "ok":
            self.scored += 1
            self.correct += bool(record["correct"])
        else:
            self.failed += 1
            self.failures.add(record["error"], f"{record['method']} {record['ratio']:g} on {record['bench']} item "
                              f"{record['id']!r}", record.get("kind") in RETRYABLE_KINDS)
        accuracy = f"{100 * self.correct / self.scored:.1f}%" if self.scored else "-"
        self.reporter.advance(self.task, f"Eval (accuracy {accuracy}, failed {self.failed})")


def _finish(outcome: EvalOutcome, failures: Failures) -> None:
    print(f"Eval: {outcome.answered} answered, {outcome.failed} failed, {outcome.already_done} already done "
          f"-> {outcome.run_dir}", file=sys.stderr)
    failures.print("prediction(s)")


def eval_command(
    args: EvalArgs,
    data: EvalData = None,
    protocol: EvalProtocolOpt = ProtocolName(DEFAULT_PROTOCOL),
    methods: EvalMethods = None,
    ratios: EvalRatios = None,
    budgets: EvalBudgets = None,
    opt: Opt = None,
    model: Model = None,
    layout: LayoutOpt = None,
    device: Device = DEFAULT_DEVICE,
    dtype: DTypeOpt = DType.auto,
    attn: Attn = Attention.sdpa,
    frames: EvalFrames = None,
    max_new_tokens: EvalMaxNewTokens = None,
    limit: EvalLimit = None,
    shard: EvalShard = None,
    out: EvalOut = None,
    json_output: EvalJson = False,
    plot: EvalPlot = None,
    merge: EvalMerge = False,
    no_cache: NoCache = False,
    cache_max_size: CacheMaxSize = None,
    config: Config = None,
    force_new: ForceNew = False,
    quiet: Quiet = False,
    debug: Debug = False,
    ray: RayAddress = None,
    workers: Workers = None,
    gpus_per_worker: GpusPerWorker = None,
) -> None:
    """Evaluate methods x ratios on a video QA benchmark (Table 1 of the paper), or --merge run directories.

    Each video is decoded and encoded once (or read from the feature cache); each (method, ratio) prunes it once
    and prefills the prompt prefix once for all its questions. Re-running the same command resumes; failed
    predictions are retried.

    With --ray: the videos on Ray workers, each with its own model; RUN_DIR is the same (resume with or without it).

    Exit code 0 when every question was scored, 1 when some were not (missing or broken videos), 2 for bad usage.
    """
    from fpcli.eval import EvalRequest, get_protocol, merge_runs, prepare_eval, run_eval
    from fpcli.eval.run import method_settings
    from fpcli.eval.settings import eval_settings, start_over

    on_ray = RaySettings.of(ray, workers, gpus_per_worker)
    if merge:
        given = [name for name, value in (("--data", data), ("--shard", shard), ("--limit", limit),
                                          ("--ray", on_ray), ("--force-new", force_new)) if value]
        if given:
            raise errors.usage_error(f"--merge takes RUN_DIR... (and --out, --json, --plot), not {given[0]}")
        raise typer.Exit(_show(merge_runs([Path(a) for a in args], out), json_output, plot))
    if len(args) != 1:
        raise errors.usage_error(f"give one BENCH, got {len(args)} arguments (several run directories: --merge)")
    if data is None or out is None:
        raise errors.usage_error(f"{'--data DIR' if data is None else '--out RUN_DIR'} is required")
    if ratios is not None and budgets is not None:
        raise errors.usage_error("give --ratios or --budgets, not both")
    counts = _counts(frames, "--frames", MAX_FRAMES)
    chosen = {"methods": _names(methods), "ratios": _ratios(ratios), "budgets": _counts(budgets, "--budgets")}
    if chosen["budgets"] is not None:
        chosen["ratios"] = ()
    request = EvalRequest(
        bench=args[0], data=data, out=out, protocol=plain(protocol), max_new_tokens=max_new_tokens, limit=limit,
        shard=shard, frames=counts if counts is None or len(counts) > 1 else counts[0],
        **{k: v for k, v in chosen.items() if v is not None},
    )
    request = dataclasses.replace(request, method_options=_method_options(opt, request.methods))
    prepared = prepare_eval(request)
    if force_new:
        start_over(out)
    cache = feature_cache(no_cache, cache_max_size)
    with Reporter(quiet) as reporter:
        model_settings = ModelSettings.of(model, layout, device, dtype, attn)
        llm = LazyModel(model_settings, reporter, gpu_default=get_protocol(request.protocol).model or GPU_DEFAULT,
                        methods=[MethodSetting(*setting) for setting in method_settings(prepared)])
        llm.check_methods()
        bar = _Bar(reporter)
        execute = None
        if on_ray is not None:
            from fpcli.run.on_ray import eval_executor

            # the workers load what this process names (its default model), so run.json says what they ran
            execute = eval_executor(on_ray, dataclasses.replace(model_settings, model=llm.spec), reporter)
        outcome = run_eval(prepared, llm, on_plan=bar.planned, on_record=bar.record, progress=reporter.callback,
                           cache=cache, execute=execute, settings=eval_settings(
                               prepared.protocol, prepared.bench_protocol, Recorder(llm).model_part(),
                               request.recorded_frames, max_new_tokens))
    _finish(outcome, bar.failures)
    raise typer.Exit(_show(outcome.summary, json_output, plot))
