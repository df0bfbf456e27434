"""`forestprune batch JOBS`: many (video, question) items, one model load, resumable results.

The jobs file, item ids and work units are fpcli.run.jobs's. Results: one JSON line per item, appended as soon as
it finishes (fpcli.cli.results_log). `{"id", "status": "ok", ...the `ask --json` fields}` or `{"id", "status":
"error", "video", "question", "error"}`. Re-running with the same --out skips ids already ok and retries failed
ones.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from fpcli.cli import errors
from fpcli.cli.config import config_origin
from fpcli.cli.failures import Failures
from fpcli.cli.on_ray import GpusPerWorker, RayAddress, Workers
from fpcli.cli.options import (
    Budget,
    CacheMaxSize,
    DEFAULT_DEVICE,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_METHOD,
    DEFAULT_SEED,
    DEFAULT_TEMPERATURE,
    Attention,
    Attn,
    Config,
    Debug,
    Device,
    DType,
    DTypeOpt,
    ForceNew,
    Fps,
    Frames,
    LayoutOpt,
    MaxPixels,
    NoCache,
    MaxNewTokens,
    Method,
    Model,
    Opt,
    Quiet,
    Ratio,
    Seed,
    TauP,
    TauS,
    Temperature,
)
from fpcli.cli.progress import Reporter
from fpcli.cli.results_log import ResultsLog
from fpcli.cli.runner import feature_cache, warn
from fpcli.cli.settings import run_settings
from fpcli.cli.signals import sigterm_interrupts
from fpcli.cli.startup import with_startup
from fpcli.recorded_settings import SETTINGS_KEY
from fpcli.run.jobs import Job, answer_jobs, read_jobs
from fpcli.run.on_ray import RaySettings
from fpcli.run.recorded import Recorder, check_resume, done_records
from fpcli.run.settings import ModelSettings, RunSettings
from fpcli.run.source import LazyModel

if TYPE_CHECKING:
    from fpcli.model.feature_cache import FeatureCache

def default_out(jobs: Path) -> Path:
    """jobs.yaml -> jobs.results.jsonl, next to it: re-running the same command resumes."""
    return jobs.with_name(f"{jobs.stem}.results.jsonl")


def batch(
    ctx: typer.Context,
    jobs_file: Annotated[Path, typer.Argument(metavar="JOBS", help="YAML or JSONL file of {video, question, \\[id], "
                                              "\\[options]} items.", show_default=False, dir_okay=False)],
    out: Annotated[
        Optional[Path],
        typer.Option("--out", "-o", dir_okay=False, rich_help_panel="Output", show_default=False,
                     help="Results JSONL, appended per item; re-running resumes. Default: JOBS.results.jsonl."),
    ] = None,
    model: Model = None,
    layout: LayoutOpt = None,
    device: Device = DEFAULT_DEVICE,
    dtype: DTypeOpt = DType.auto,
    attn: Attn = Attention.sdpa,
    ratio: Ratio = None,
    budget: Budget = None,
    method: Method = DEFAULT_METHOD,
    frames: Frames = None,
    fps: Fps = None,
    max_pixels: MaxPixels = None,
    tau_s: TauS = None,
    tau_p: TauP = None,
    opt: Opt = None,
    max_new_tokens: MaxNewTokens = DEFAULT_MAX_NEW_TOKENS,
    temperature: Temperature = DEFAULT_TEMPERATURE,
    seed: Seed = DEFAULT_SEED,
    no_cache: NoCache = False,
    cache_max_size: CacheMaxSize = None,
    config: Config = None,
    force_new: ForceNew = False,
    ray: RayAddress = None,
    workers: Workers = None,
    gpus_per_worker: GpusPerWorker = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Run every item of JOBS with one loaded model, appending results to --out as they finish.

    Items already done in --out are skipped and failed ones retried: an interrupted batch resumes where it stopped.

    A failing item is recorded with its error and the batch goes on.

    With --ray: on Ray workers, each with its own model; the results file is the same.

    Exit code 0 when every item succeeded, 1 otherwise, 130 when interrupted.
    """
    base = run_settings(ratio=ratio, method=method, frames=frames, fps=fps, max_pixels=max_pixels, tau_s=tau_s,
                        tau_p=tau_p, opt=opt, seed=seed, max_new_tokens=max_new_tokens, temperature=temperature,
                        budget=budget, config=config_origin(ctx))
    model_settings = ModelSettings.of(model, layout, device, dtype, attn)
    on_ray = RaySettings.of(ray, workers, gpus_per_worker)
    out = out or default_out(jobs_file)
    if out.resolve() == jobs_file.resolve():
        raise errors.usage_error("--out must not be the jobs file", out)
    cache = feature_cache(no_cache, cache_max_size)
    jobs = read_jobs(jobs_file)
    if force_new:
        out.unlink(missing_ok=True)
    recorder = Recorder(LazyModel(model_settings, Reporter(quiet)))
    check_resume(out, done_records(out), jobs, base, recorder)
    model_settings = dataclasses.replace(model_settings, model=recorder.model.spec)  # a default model said once
    log = ResultsLog(out, {job.id for job in jobs})
    try:
        code = _run(jobs, log, base, model_settings, cache, quiet, errors.debug_enabled(ctx.meta), on_ray, recorder)
    finally:
        log.close()
    raise typer.Exit(code)


def _run(jobs: list[Job], log: ResultsLog, base: RunSettings, model_settings: ModelSettings,
         cache: Optional[FeatureCache], quiet: bool, debug: bool, on_ray: Optional[RaySettings] = None,
         recorder: Optional[Recorder] = None) -> int:
    """Run the pending items; print the summary; return the exit code."""
    pending = [job for job in jobs if job.id not in log.done]
    by_id = {job.id: job for job in pending}
    counts: Counter[str] = Counter()
    failures = Failures()
    start = time.perf_counter()
    interrupted = False
    with Reporter(quiet) as reporter:
        if log.truncated:
            reporter.message(f"Dropped the cut-short last line of {log.path}; its item runs again.")
        if log.unreadable:
            reporter.message(f"Dropped {log.unreadable} line(s) of {log.path} that were not JSON records.")
        if len(pending) < len(jobs) or log.retrying:
            reporter.message(f"Resuming {log.path}: {len(jobs) - len(pending)} of {len(jobs)} items already done, "
                             f"{log.retrying} failed item(s) to retry.")
        else:
            reporter.message(f"Writing results to {log.path}.")
        task = reporter.task("Batch", total=len(pending))

        def finish(job: Job, record: dict[str, Any], seconds: float, worker: str = "") -> None:
            if record["status"] == "ok" and recorder is not None:
                record = {**record, "timing_s": with_startup(record["timing_s"]),
                          SETTINGS_KEY: recorder.settings(job.settings(base))}
            log.append(record)
            counts[record["status"]] += 1
            reporter.advance(task)
            where = f"[{counts.total()}/{len(pending)}] {job.id} {job.video}"
            if record["status"] == "ok":
                warn(record)
                reporter.message(f"ok     {where} ({seconds:.1f} s{', ' + worker if worker else ''})")
            else:
                reporter.console.print(f"failed {where}: {record['error']}", markup=False)
                failures.add(record["error"], f"item {job.id!r}", record["retryable"])

        try:
            with sigterm_interrupts():  # a scheduler's stop ends the batch like Ctrl-C, summary and all
                if on_ray is not None:
                    from fpcli.run.on_ray import run_batch

                    run_batch(pending, base, model_settings, cache, on_ray, reporter, finish)
                else:
                    llm = LazyModel(model_settings, reporter, cache=cache)
                    item_start = time.perf_counter()
                    on_error = (lambda exc: errors.report(exc, debug=True)) if debug else None
                    for record in answer_jobs(llm, pending, base, on_error):
                        finish(by_id[record["id"]], record, time.perf_counter() - item_start)
                        item_start = time.perf_counter()
        except KeyboardInterrupt:
            interrupted = True
    left = len(pending) - counts["ok"] - counts["error"]
    summary = (f"Batch: {counts['ok']} ok, {counts['error']} failed, {len(jobs) - len(pending)} already done "
               f"({len(jobs)} items) in {time.perf_counter() - start:.1f} s -> {log.path}")
    print(summary, file=sys.stderr)
    if interrupted:
        failures.print("item(s)")
        print(f"Interrupted: {left} item(s) not run; re-run the same command to resume.", file=sys.stderr)
        return errors.EXIT_INTERRUPTED
    if counts["error"]:
        failures.print("item(s)")
        return errors.EXIT_FAILURE
    return errors.EXIT_OK
