"""`forestprune batch JOBS`: many (video, question) items, one model load, resumable results.

JOBS is YAML (a list of items, or a mapping with a `jobs:` list; `.json` arrays read the same)
or JSON lines (`.jsonl`/`.ndjson`, one item per line). An item is
    {video: PATH, question: TEXT, id: ANY (optional), options: {ratio, method, frames, fps, max_pixels,
     max_new_tokens, temperature, seed, or any option of the item's method: tau_s, tau_p, ...} (optional,
     override the command-line values)}
Relative video paths are relative to the jobs file. Without `id`, an item's id is the first 12 hex
digits of the SHA-1 of its canonical JSON {video, question, options}: stable when items are
reordered or added, so resuming keeps working after the jobs file is edited.

Results: one JSON line per item, appended as soon as it finishes (fpcli.cli.results_log). `{"id",
"status": "ok", ...the `ask --json` fields}` or `{"id", "status": "error", "video", "question", "error"}`.
Re-running with the same --out skips ids already ok and retries failed ones.

Items that share a video and its sampling are one work unit (`clip_units`, `answer_jobs`; on Ray the
unit of a worker): the clip is decoded and encoded once per run (or read from the feature cache
once), and items with the same pruning setting share one session. Units run in the order of their first item,
the items of a unit in the jobs file's order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Iterator, Optional

import typer
import yaml

from fpcli.cli import errors
from fpcli.cli.answering import Question, answer_clip
from fpcli.cli.config import config_origin, yaml_problem
from fpcli.cli.failures import Failures, retryable
from fpcli.cli.on_ray import GpusPerWorker, RayAddress, RaySettings, Workers
from fpcli.cli.options import (
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
from fpcli.cli.recorded import Recorder, check_resume, done_records
from fpcli.cli.results_log import ResultsLog
from fpcli.cli.signals import sigterm_interrupts
from fpcli.cli.runner import LazyModel, feature_cache, warn
from fpcli.cli.settings import ModelSettings, RunSettings, run_settings
from fpcli.run_settings import SETTINGS_KEY

if TYPE_CHECKING:
    from fpcli.model.feature_cache import FeatureCache

ITEM_KEYS = ("video", "question", "id", "options")
JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass
class Job:
    """One item of the jobs file; `problem` says why it cannot run (it is then recorded as an error)."""

    id: str
    video: Any
    question: Any
    options: dict[str, Any] = field(default_factory=dict)
    problem: Optional[str] = None

    def settings(self, base: RunSettings) -> RunSettings:
        """The command-line settings with this item's options applied and checked (ValueError if bad)."""
        if self.problem is not None:
            raise ValueError(self.problem)
        return base.override(self.options)


def job_id(item: Any) -> str:
    if isinstance(item, dict):
        item = {"video": item.get("video"), "question": item.get("question"), "options": item.get("options") or {}}
    canonical = json.dumps(item, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:12]


def _load_items(path: Path) -> list[Any]:
    """The raw items of a jobs file; a file that does not parse is a usage error (exit 2)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.usage_error(f"cannot read jobs file: {exc.strerror}", path) from exc
    if path.suffix.lower() in JSONL_SUFFIXES:
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise errors.usage_error(f"line {number} of the jobs file is not valid JSON: {exc.msg}", path) from exc
        return items
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise errors.usage_error(f"jobs file is not valid YAML: {yaml_problem(exc)}", path) from exc
    if isinstance(data, dict) and "jobs" in data:
        data = data["jobs"]
    if data is None:
        data = []
    if not isinstance(data, list):
        raise errors.usage_error("jobs file must hold a list of items (or `jobs:` with a list)", path)
    return data


def _job(item: Any, base_dir: Path) -> Job:
    if not isinstance(item, dict):
        return Job(job_id(item), None, None, problem=f"item must be a mapping with video and question, got {item!r}")
    raw_id = item.get("id")
    ident = job_id(item) if raw_id is None else str(raw_id)
    video, question, options = item.get("video"), item.get("question"), item.get("options") or {}
    problem = None
    unknown = [key for key in item if key not in ITEM_KEYS]
    if unknown:
        problem = f"unknown key '{unknown[0]}' (an item has {', '.join(ITEM_KEYS)}; per-item settings go in options)"
    elif not isinstance(video, str) or not video:
        problem = "item has no video (a path)"
    elif not isinstance(question, str) or not question:
        problem = "item has no question (text)"
    elif not isinstance(options, dict):
        problem = f"options must be a mapping, got {options!r}"
    if problem is None:
        path = Path(video).expanduser()
        video = path if path.is_absolute() else base_dir / path
    return Job(ident, video, question, options if isinstance(options, dict) else {}, problem)


def read_jobs(path: Path) -> list[Job]:
    """The items of a jobs file, with ids; no items, an item without video or question (or otherwise malformed)
    and duplicate ids are usage errors naming the item (1-based)."""
    jobs = [_job(item, path.parent) for item in _load_items(path)]
    if not jobs:
        raise errors.usage_error("jobs file has no items", path,
                                 hint="an item is {video: PATH, question: TEXT}; see 'forestprune batch --help'")
    bad = next(((number, job) for number, job in enumerate(jobs, 1) if job.problem is not None), None)
    if bad is not None:
        raise errors.usage_error(f"item {bad[0]} of the jobs file: {bad[1].problem}", path)
    seen = Counter(job.id for job in jobs)
    duplicates = [ident for ident, count in seen.items() if count > 1]
    if duplicates:
        raise errors.usage_error(
            f"duplicate item id '{duplicates[0]}'", path, hint="give each item its own id (identical items share one)"
        )
    return jobs


def error_record(job: Job, error: str, retryable: bool = True) -> dict[str, Any]:
    """The results line of an item that failed with `error` (one line); `retryable`: whether running it again
    can succeed (fpcli.cli.failures)."""
    return {
        "id": job.id,
        "status": "error",
        "video": None if job.video is None else str(job.video),
        "question": job.question,
        "error": error,
        "retryable": retryable,
    }


def unit_key(job: Job, base: RunSettings) -> tuple[Any, ...]:
    """What items of one work unit share: the video, the sampling (frames, fps: items that set neither get the
    model's default, the same for every item of a run) and Qwen-VL's max_pixels; an item whose options do not check
    is a unit of its own."""
    try:
        settings = job.settings(base)
    except ValueError:
        return ("invalid", job.id)
    return (str(Path(job.video).resolve()), settings.frames, settings.fps, settings.max_pixels)


def clip_units(jobs: list[Job], base: RunSettings) -> list[list[Job]]:
    """`jobs` grouped by `unit_key`, in the order of each unit's first item, the items of a unit in their order."""
    units: dict[tuple[Any, ...], list[Job]] = {}
    for job in jobs:
        units.setdefault(unit_key(job, base), []).append(job)
    return list(units.values())


def answer_jobs(llm: LazyModel, jobs: list[Job], base: RunSettings, debug: bool) -> Iterator[dict[str, Any]]:
    """The ok or error record of each job, as each finishes: unit by unit (`clip_units`), so `jobs` of one unit
    come back in their order. Each unit's clip is decoded and encoded once (or read from the feature cache), its
    items with one pruning setting share a session (fpcli.cli.answering.answer_clip). A failure of an item is
    recorded, not raised, and a unit whose items have bad options or a bad video loads no model; a model that
    cannot load ends the batch (errors.Fatal): no item could run."""
    for unit in clip_units(jobs, base):
        try:
            questions = [Question(job.question, job.settings(base)) for job in unit]
        except ValueError as exc:  # an invalid item: a unit of its own
            yield error_record(unit[0], errors.one_line(exc), retryable=False)
            continue
        for job, outcome in zip(unit, answer_clip(llm, unit[0].video, questions)):
            if isinstance(outcome, Exception):
                if debug:
                    errors.report(outcome, debug=True)
                yield error_record(job, errors.one_line(outcome), retryable(outcome))
            else:
                yield {"id": job.id, "status": "ok", **outcome}


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
                        config=config_origin(ctx))
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
                record = {**record, SETTINGS_KEY: recorder.settings(job.settings(base))}
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
                    from fpcli.cli.on_ray import run_batch

                    run_batch(pending, base, model_settings, cache, on_ray, reporter, finish)
                else:
                    llm = LazyModel(model_settings, reporter, cache=cache)
                    item_start = time.perf_counter()
                    for record in answer_jobs(llm, pending, base, debug):
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
