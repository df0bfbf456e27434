"""Batch and eval items on Ray workers (fpcli.scale): the settings of a run there, and the handlers a worker runs.

Each worker is a Ray actor with its own model, loaded at its first item that can run; it answers the items of one
clip (a video and its sampling: one decoding and tower pass, or a feature cache hit) after another and each record
streams back to the driver, which alone writes them (the command's fsynced results file), so the output, its
resume and its format are those of a single-process run. Videos must be at the same path on every node (a shared
filesystem) when the cluster has several.

batch: an item is a job (run_batch). eval: an item is one pending prediction (question x method x ratio) and a
unit the predictions of one video, which a worker runs as one `fpcli.eval` VideoGroup: one decode and encode, one
prefix prefill per (method, ratio) (eval_executor, the Executor `fpcli.eval.run_eval` takes).
"""

from __future__ import annotations

import contextlib
import functools
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterator, Optional, Sequence

from fpcli.errors import Fatal, InputError, describe
from fpcli.run.jobs import Job, answer_jobs, error_record, unit_key
from fpcli.run.settings import ModelSettings, RunSettings
from fpcli.run.source import LazyModel, QuietReporter, Reporter

if TYPE_CHECKING:
    from fpcli.eval import Counts, Executor, VideoRunner, WorkItem, Write
    from fpcli.eval.plan import VideoGroup
    from fpcli.model.feature_cache import FeatureCache
    from fpcli.scale import Cluster, ItemResult, WorkerPlan


@dataclass(frozen=True)
class RaySettings:
    """Where and how wide a command runs on Ray; `of` is None when --ray is not given."""

    address: str
    workers: Optional[int] = None
    gpus_per_worker: Optional[float] = None

    @classmethod
    def of(cls, address: Optional[str], workers: Optional[int], gpus: Optional[float]) -> Optional[RaySettings]:
        """From the command's --ray, --workers and --gpus-per-worker."""
        if address is None:
            if workers is not None or gpus is not None:
                raise InputError("--workers and --gpus-per-worker need --ray")
            return None
        return cls(address, workers, gpus)


class BatchHandler:
    """A worker's handler (fpcli.scale.worker): each job's record exactly as a single-process batch makes it, the
    jobs of one work unit (a video and its sampling: fpcli.cli.batch.unit_key) from one clip encoding."""

    def __init__(self, base: RunSettings, model_settings: ModelSettings, cache: Optional[FeatureCache]) -> None:
        self.base = base
        self.llm = LazyModel(model_settings, QuietReporter(), cache=cache)

    def __call__(self, unit: Any, jobs: list[Job]) -> Iterator[dict[str, Any]]:
        from fpcli.scale import WorkerFatal

        try:
            yield from answer_jobs(self.llm, jobs, self.base)
        except Fatal as exc:  # the model cannot load here: nor for any other item
            message, hint, _ = describe(exc)
            raise WorkerFatal(message, hint=hint) from exc


class EvalHandler:
    """A worker's handler for eval: the predictions of one video (fpcli.eval.work) run as one group, each record
    with the work it cost, exactly as `fpcli.eval.run_eval` makes them on one process."""

    def __init__(self, model_settings: ModelSettings, runner: VideoRunner) -> None:
        self.llm = LazyModel(model_settings, QuietReporter())
        self.runner = runner

    def __call__(self, video: str, items: list[WorkItem]) -> Iterator[tuple[dict[str, Any], Counts]]:
        from fpcli.eval import group_of
        from fpcli.scale import WorkerFatal

        try:
            llm = self.llm.get()
        except Fatal as exc:  # the model cannot load here: nor for any other item
            message, hint, _ = describe(exc)
            raise WorkerFatal(message, hint=hint) from exc
        yield from self.runner(llm, group_of(items))


def _describe_start(reporter: Reporter) -> Callable[[Cluster, WorkerPlan], None]:
    def started(cluster: Cluster, plan: WorkerPlan) -> None:
        where = "a local Ray instance" if cluster.address is None else f"the Ray cluster at {cluster.address}"
        each = f"{plan.gpus_per_worker:g} GPU(s) each" if plan.gpus_per_worker else "on CPUs"
        reporter.message(f"Running on {where} ({cluster.cpus:g} CPUs, {cluster.gpus:g} GPUs): "
                         f"{plan.workers} worker(s), {each}.")
    return started


def _run(items: list[Any], key: Callable[[Any], Hashable], ident: Callable[[Any], str],
         factory: Callable[[], Any], received: Callable[[ItemResult], None], ray: RaySettings,
         reporter: Reporter) -> None:
    """`items` on Ray, `received` on this process for each; the per-worker counts at the end."""
    from fpcli.scale import run_on_ray

    with contextlib.redirect_stdout(sys.stderr):  # Ray's own notes (a worker died) are not results: to stderr
        report = run_on_ray(items, key=key, ident=ident, factory=factory, on_result=received, address=ray.address,
                            workers=ray.workers, gpus_per_worker=ray.gpus_per_worker,
                            on_start=_describe_start(reporter))
    counts = ", ".join(f"{name} {count}" for name, count in report.per_worker.items())
    lost = (f"; {report.worker_deaths} worker death(s), {report.requeued} item(s) re-queued"
            if report.worker_deaths else "")
    rate = report.total / report.elapsed_s if report.elapsed_s > 0 else 0.0
    reporter.message(f"Items per worker: {counts or 'none'} ({rate:.2f} items/s{lost}).")


def run_batch(pending: list[Job], base: RunSettings, model_settings: ModelSettings, cache: Optional[FeatureCache],
              ray: RaySettings, reporter: Reporter, finish: Callable[[Job, dict[str, Any], float, str], None]) -> None:
    """The pending jobs on Ray; `finish(job, record, seconds, worker)` on this process as each one is done. Workers
    use the feature cache `cache` (its directory on their node)."""
    if not pending:  # all done already: no cluster needed
        return

    def received(result: ItemResult) -> None:
        job = result.item
        record = result.value if result.ok else error_record(job, result.error)
        finish(job, record, result.seconds, result.worker)

    factory = functools.partial(BatchHandler, base, model_settings, cache)
    _run(pending, functools.partial(unit_key, base=base), lambda job: job.id, factory, received, ray, reporter)


def eval_executor(ray: RaySettings, model_settings: ModelSettings, reporter: Reporter) -> Executor:
    """`fpcli.eval.run_eval`'s executor on Ray: every pending prediction an item, those of a video one unit.
    `model_settings` must name the model (the driver resolves the default, so run.json says what the workers ran)."""
    from fpcli.eval import Counts, work_items

    def execute(groups: Sequence[VideoGroup], runner: VideoRunner, write: Write) -> None:
        def received(result: ItemResult) -> None:
            record, cost = result.value if result.ok else (result.item.failed(result.error), Counts())
            write(record, cost)

        _run(work_items(groups), lambda work: work.video_key, lambda work: work.ident,
             functools.partial(EvalHandler, model_settings, runner), received, ray, reporter)
    return execute
