"""An evaluation run: check the request (no model), then walk its plan video by video into a run directory.

    prepared = prepare_eval(EvalRequest("mvbench", Path("~/data/MVBench"), out=Path("runs/mvb")))  # checks all
    outcome = run_eval(prepared, model)          # model: .spec, .layout known before loading, .get() loads
    outcome.summary.table1                       # also in runs/mvb/summary.json

`prepare_eval` finds every bad input before a model loads: the benchmark and protocol names, the data folder's
files, the methods and ratios (`fpcli.model.methods.validate_method`, with the protocol's options), --frames,
--shard, --limit, and an --out that is not a directory. `run_eval` opens the run directory (another run there is
bad input too), records missing videos without loading the model, and loads it at the first video that exists;
each video is `fpcli.eval.loop.run_video`. `merge_runs` is `--merge`.

Who runs the videos is the `execute` argument (an Executor): by default this process, one video after another; the
CLI's `--ray` passes one that spreads the videos over Ray workers (fpcli.cli.on_ray). Either way records come back
here with the work they cost, and only this process writes the run directory, so both make the same directory and
either resumes the other's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from fpcli.eval.benches import get_bench, load_bench
from fpcli.eval.errors import EvalInputError
from fpcli.eval.items import EvalItem
from fpcli.eval.loop import Counts, Progress, VideoRunner
from fpcli.eval.plan import RunPlan, Setting, VideoGroup, plan_run, prediction_key, sweep_of
from fpcli.eval.protocols import BenchProtocol, get_protocol
from fpcli.eval.protocols import Protocol as EvalProtocol
from fpcli.eval.rundir import (
    MISSING_VIDEO, SUMMARY, RunDir, RunInfo, RunSummary, failure_records, read_run_info, summarize, write_summary,
)
from fpcli.eval.settings import check_merge, open_settings
from fpcli.eval.shard import Shard, parse_shard, shard_items
from fpcli.recorded_settings import SETTINGS_KEY

if TYPE_CHECKING:
    from fpcli.model import VideoLLM
    from fpcli.model.feature_cache import FeatureCache

DEFAULT_PROTOCOL = "paper"
DEFAULT_METHODS = ("none", "forestprune")
DEFAULT_RATIOS = (0.7, 0.8, 0.9)

Write = Callable[[dict[str, Any], Counts], None]  # a record, and the work it cost, into the run directory
# Runs the groups (their videos exist) and calls `write` on this process once per pending prediction, as each is done.
Executor = Callable[[Sequence[VideoGroup], VideoRunner, Write], None]


class ModelSource(Protocol):
    """The model of a run, loaded only when a video needs it (the CLI's LazyModel is one)."""

    @property
    def spec(self) -> str: ...  # what run.json records as the model

    @property
    def layout(self) -> str: ...  # known before loading: it decides the sampling and the prompts

    def get(self) -> VideoLLM: ...


@dataclass(frozen=True)
class EvalRequest:
    """What `forestprune eval` asks for. `frames` and `max_new_tokens` replace the protocol's values when given;
    several `frames` are a frames sweep (every setting at each, `none` at the first). `budgets` (visual tokens kept
    whatever the frame count) replace `ratios`: give ratios=() with them."""

    bench: str
    data: Path
    out: Path
    protocol: str = DEFAULT_PROTOCOL
    methods: tuple[str, ...] = DEFAULT_METHODS
    ratios: tuple[float, ...] = DEFAULT_RATIOS
    frames: int | tuple[int, ...] | None = None
    budgets: tuple[int, ...] = ()
    max_new_tokens: int | None = None
    limit: int | None = None
    shard: str | None = None
    method_options: dict[str, Any] = field(default_factory=dict)  # --opt: each to every method that takes it

    @property
    def recorded_frames(self) -> int | list[int | None] | None:
        """The frames a run's settings record: the one count given (None: the protocol's), or a sweep's list."""
        counts = self.frame_counts
        return counts[0] if len(counts) == 1 else counts

    @property
    def frame_counts(self) -> list[int | None]:
        """The frame counts of the run: [None] for the protocol's, one or several (a sweep) given."""
        return [self.frames] if not isinstance(self.frames, tuple) else list(self.frames)

    def settings(self) -> list[Setting]:
        """Every setting of the run (fpcli.eval.plan.sweep_of)."""
        return sweep_of(list(self.methods), list(self.ratios), list(self.budgets), self.frame_counts)


@dataclass(frozen=True)
class PreparedRun:
    """A checked request: the protocol's settings for the benchmark and the items of this shard."""

    request: EvalRequest
    protocol: EvalProtocol
    bench_protocol: BenchProtocol
    items: list[EvalItem]
    shard: Shard | None


@dataclass
class EvalOutcome:
    """What one invocation did (`planned` predictions, of which `answered` and `failed`; `already_done` skipped)
    and the run directory's summary after it (all invocations)."""

    run_dir: Path
    summary: RunSummary
    planned: int
    answered: int
    failed: int
    already_done: int
    counts: Counts = field(default_factory=Counts)

    @property
    def complete(self) -> bool:
        """Every prediction of the run directory was scored (exit 0)."""
        return self.summary.failed == 0

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "planned": self.planned, "answered": self.answered,
                "failed": self.failed, "already_done": self.already_done, "counts": self.counts.to_dict()}


def _positive(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise EvalInputError(f"{name} must be an integer >= 1, got {value!r}")


def prepare_eval(request: EvalRequest) -> PreparedRun:
    """Check everything about `request` that needs no model, and read the benchmark (EvalInputError, exit 2). The
    request's method options join the protocol's (and win over them) for every method that takes them."""
    from fpcli.model.methods import options_of, validate_method

    get_bench(request.bench)
    protocol = get_protocol(request.protocol)
    bench_protocol = protocol.for_bench(request.bench)
    if request.method_options:
        chosen = {method: {**bench_protocol.prune_options.get(method, {}),
                           **{k: v for k, v in request.method_options.items() if k in options_of(method)}}
                  for method in request.methods}
        bench_protocol = replace(bench_protocol, prune_options={m: o for m, o in chosen.items() if o})
    for frames in request.frame_counts:
        _positive("frames", frames)
    _positive("max_new_tokens", request.max_new_tokens)
    for setting in request.settings():
        try:  # a budget setting's ratio depends on the video: its options are checked at a stand-in ratio 0
            options = bench_protocol.prune_options.get(setting.method, {})
            validate_method(setting.ratio or 0.0, setting.method, **options)
        except ValueError as exc:
            raise EvalInputError(str(exc)) from None
    shard = None if request.shard is None else parse_shard(request.shard)
    if request.out.exists() and not request.out.is_dir():
        raise EvalInputError("--out must be a run directory, not a file", request.out)
    items = shard_items(load_bench(request.bench, request.data, limit=request.limit), shard)
    if not items:
        raise EvalInputError(f"no questions to evaluate in shard {shard}" if shard else "no questions to evaluate",
                             request.data)
    return PreparedRun(request, protocol, bench_protocol, items, shard)


def method_settings(prepared: PreparedRun) -> list[tuple[str, float, dict]]:
    """(method, ratio, options) of every setting the run answers with: what a model checks before any encoding (a
    budget setting at the stand-in ratio 0: its ratio depends on the video)."""
    settings = dict.fromkeys((s.method, s.ratio or 0.0) for s in prepared.request.settings())
    return [(method, ratio, dict(prepared.bench_protocol.prune_options.get(method, {}))) for method, ratio in settings]


def run_info(prepared: PreparedRun, model: ModelSource) -> RunInfo:
    """What run.json records; a model whose layout the protocols have no settings for is bad input."""
    prepared.protocol.check_layout(prepared.request.bench, model.layout)
    shard = None if prepared.shard is None else str(prepared.shard)
    return RunInfo(prepared.request.bench, prepared.protocol.name, model.spec, model.layout, shard)


def in_process(model: ModelSource, progress: Progress | None = None) -> Executor:
    """The default executor: each group in turn on this process's model (loaded at the first group)."""
    def execute(groups: Sequence[VideoGroup], runner: VideoRunner, write: Write) -> None:
        for group in groups:
            for record, cost in runner(model.get(), group, progress):
                write(record, cost)
    return execute


def run_eval(
    prepared: PreparedRun,
    model: ModelSource,
    *,
    on_plan: Callable[[RunPlan, RunDir], None] | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    progress: Progress | None = None,
    cache: FeatureCache | None = None,
    execute: Executor | None = None,
    settings: dict[str, Any] | None = None,
) -> EvalOutcome:
    """Run (or resume) `prepared` into its --out directory and write its summary.json.

    on_plan(plan, run_dir) is called once the pending work is known; on_record(record) after each record is on
    disk (progress and running accuracy); progress(stage, done, total) goes to decoding and encoding (in this
    process). `cache`: the feature cache each video's features are read from or stored in (None: always encode).
    `execute` runs the videos that exist (default: `in_process(model, progress)`); missing videos are recorded here
    first, without a model. `settings` (fpcli.eval.settings.eval_settings): what the run directory must have been
    made with (SettingsChanged, exit 2, otherwise), recorded there and on each answered prediction."""
    request = prepared.request
    counts = Counts()
    answered = failed = 0
    counts_given = request.frame_counts
    runner = VideoRunner(prepared.bench_protocol, counts_given[0] if len(counts_given) == 1 else None,
                         request.max_new_tokens, prepared.protocol.seed, cache)
    if settings is not None:
        open_settings(request.out, settings)
    with RunDir(request.out, run_info(prepared, model)) as run:
        mine = {prediction_key(i.bench, i.id, s.method, s.ratio, s.budget, s.frames)
                for i in prepared.items for s in request.settings()}
        already_done = len(mine & run.done)
        plan = plan_run(prepared.items, list(request.methods), list(request.ratios),
                        use_time_bound=prepared.bench_protocol.time_bound, done=run.done,
                        budgets=list(request.budgets), frames=counts_given)
        if on_plan is not None:
            on_plan(plan, run)

        def write(record: dict[str, Any], cost: Counts) -> None:
            nonlocal answered, failed
            if settings is not None and record["status"] == "ok":
                record = {**record, SETTINGS_KEY: settings}
            run.append(record)
            run.count(**cost.to_dict())  # with its record: an interruption never counts work twice
            counts.add(cost)
            answered += record["status"] == "ok"
            failed += record["status"] != "ok"
            if on_record is not None:
                on_record(record)

        present = []
        for group in plan.groups:
            if group.video.is_file():
                present.append(group)
                continue
            for record in failure_records(group.sessions, "file not found", MISSING_VIDEO):
                write(record, Counts())
        if present:
            (execute or in_process(model, progress))(present, runner, write)
    summary = summarize([request.out])
    write_summary(request.out / SUMMARY, summary)
    return EvalOutcome(request.out, summary, plan.questions, answered, failed, already_done, counts)


def merge_runs(run_dirs: list[Path], out: Path | None = None) -> RunSummary:
    """One summary of several run directories (shards of a benchmark, or benchmarks for Table 1); written to
    `out`/summary.json when `out` is given."""
    summary = summarize(run_dirs)  # every one a run directory, of one protocol and model
    check_merge(run_dirs, [read_run_info(run_dir).bench for run_dir in run_dirs])
    if out is not None:
        if out.exists() and not out.is_dir():
            raise EvalInputError("--out must be a directory, not a file", out)
        write_summary(out / SUMMARY, summary)
    return summary
