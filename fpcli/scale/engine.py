"""Running work units on a pool of Ray actors, with results streaming to the driver and nothing lost or doubled.

Ray does the scheduling: each actor (fpcli.scale.worker.UnitWorker) takes the next unit when it is free, its
results come back as an ObjectRefGenerator per unit, and `ray.wait` over those generators hands the driver each
item the moment a worker yields it. The driver alone calls `on_result` (which writes the caller's output), once per
item. What this module adds is re-queueing:

- a worker that dies (killed, out of memory, its node lost) fails its generator with a RayActorError; the items
  of its unit not yet reported go back to the front of the queue, for any free worker, and Ray restarts the dead
  one, which gets work again once it answers a ping. Reported items are never run again (an item the worker
  finished but whose result had not reached the driver yet runs again: it was never written);
- each death is blamed on the first unreported item of the unit; an item blamed MAX_DEATHS times is reported
  failed, so one item that kills its worker (a video too long for the memory) cannot stop the run;
- an item that fails with an ordinary exception is reported failed by the worker and not retried;
- a handler that raises WorkerFatal (or a factory that cannot build one) ends the run with that error.
Every actor is killed when the run ends, also on Ctrl-C (KeyboardInterrupt propagates after that).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from fpcli.scale.cluster import WorkerPlan, require_ray
from fpcli.scale.errors import ScaleError, WorkerFatal
from fpcli.scale.units import WorkUnit
from fpcli.scale.worker import Handler, Outcome, UnitWorker, describe

MAX_DEATHS = 3  # per item: each death is blamed on the first unreported item, so a run always ends
INSTALL_EVERYWHERE = "install forestprune, with the same Python packages, on every node of the cluster"


@dataclass(frozen=True)
class ItemResult:
    """What `on_result` gets for one item: the handler's result, or the error that failed the item."""

    id: str
    item: Any
    value: Any
    error: Optional[str]
    worker: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Progress:
    """Items reported so far, for the driver's progress display."""

    done: int
    total: int
    failed: int
    elapsed_s: float

    @property
    def per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass
class RunReport:
    """A finished run: counts, re-queued items, and how many items each worker reported."""

    total: int
    ok: int = 0
    failed: int = 0
    requeued: int = 0  # items sent again after their worker died
    worker_deaths: int = 0
    per_worker: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "ok": self.ok, "failed": self.failed, "requeued": self.requeued,
                "worker_deaths": self.worker_deaths, "per_worker": dict(self.per_worker),
                "elapsed_s": round(self.elapsed_s, 4)}


@dataclass
class _Running:
    worker: int
    unit: WorkUnit
    reported: int = 0  # items of `unit` reported so far


class _Pool:
    """One run's actors, queue and bookkeeping (see the module docstring)."""

    def __init__(self, ray: Any, units: Sequence[WorkUnit], factory: Callable[[], Handler], plan: WorkerPlan,
                 on_result: Callable[[ItemResult], None], on_progress: Optional[Callable[[Progress], None]]) -> None:
        from ray import exceptions

        self.ray = ray
        self.lost = (exceptions.RayActorError, exceptions.WorkerCrashedError, exceptions.ObjectLostError,
                     exceptions.NodeDiedError)
        self.task_error = exceptions.RayTaskError
        self.unavailable = exceptions.ActorUnavailableError  # restarting, or unreachable for a moment
        self.on_result, self.on_progress = on_result, on_progress
        self.queue = deque(units)
        self.report = RunReport(total=sum(len(unit) for unit in units))
        actor = ray.remote(num_cpus=plan.cpus_per_worker, num_gpus=plan.gpus_per_worker, max_restarts=-1,
                           max_task_retries=0)(UnitWorker)  # retries are ours: Ray's would redo reported items
        self.actors = [actor.remote(factory) for _ in range(min(plan.workers, len(units)))]
        self.names = [f"worker-{index}" for index in range(len(self.actors))]
        self.report.per_worker = dict.fromkeys(self.names, 0)
        self.idle = deque(range(len(self.actors)))
        self.running: dict[Any, _Running] = {}  # ObjectRefGenerator -> its unit
        self.restarting: dict[Any, int] = {}  # ObjectRef of a ping -> the worker Ray is restarting
        self.item_deaths: Counter[str] = Counter()
        self.start = time.perf_counter()

    def run(self) -> RunReport:
        try:
            while self.queue or self.running:
                while self.queue and self.idle:
                    worker = self.idle.popleft()
                    unit = self.queue.popleft()
                    self.running[self.actors[worker].run.remote(unit)] = _Running(worker, unit)
                if not self.running and not self.restarting:
                    left = sum(len(unit) for unit in self.queue)
                    raise ScaleError(f"every worker died; {left} item(s) not run",
                                     hint="re-run the same command to resume")
                ready, _ = self.ray.wait([*self.running, *self.restarting], num_returns=1)
                for waited in ready:
                    if waited in self.restarting:
                        self._restarted(waited)
                    else:
                        self._step(waited)
        finally:
            for actor in self.actors:
                self.ray.kill(actor)
        self.report.elapsed_s = time.perf_counter() - self.start
        return self.report

    def _step(self, generator: Any) -> None:
        running = self.running[generator]
        try:
            outcome: Outcome = self.ray.get(next(generator))
        except StopIteration:
            del self.running[generator]
            self.idle.append(running.worker)
            return
        except self.lost as exc:
            del self.running[generator]
            self._died(running, exc)
            return
        except self.task_error as exc:
            raise _fatal(exc.cause) from None
        unit = running.unit
        self._report(unit.ids[outcome.index], unit.items[outcome.index], outcome.value, outcome.error,
                     self.names[running.worker], outcome.seconds)
        running.reported = outcome.index + 1

    def _report(self, ident: str, item: Any, value: Any, error: Optional[str], worker: str, seconds: float) -> None:
        self.on_result(ItemResult(ident, item, value, error, worker, seconds))
        self.report.per_worker[worker] += 1
        if error is None:
            self.report.ok += 1
        else:
            self.report.failed += 1
        if self.on_progress is not None:
            done = self.report.ok + self.report.failed
            self.on_progress(Progress(done, self.report.total, self.report.failed, time.perf_counter() - self.start))

    def _died(self, running: _Running, exc: BaseException) -> None:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "creation task" in reason:  # e.g. fpcli cannot be imported there: every restart would fail the same way
            raise ScaleError(f"a worker could not start: {reason}", hint=INSTALL_EVERYWHERE) from None
        self.report.worker_deaths += 1
        rest = running.unit.rest(running.reported)
        if rest.ids:
            first = rest.ids[0]
            self.item_deaths[first] += 1
            if self.item_deaths[first] >= MAX_DEATHS:
                error = f"the worker process died {MAX_DEATHS} times while running this item ({reason})"
                self._report(first, rest.items[0], None, error, self.names[running.worker], 0.0)
                rest = rest.rest(1)
        if rest.ids:
            self.queue.appendleft(rest)
            self.report.requeued += len(rest)
        self._ping(running.worker)  # Ray restarts it: it gets work again once it answers

    def _ping(self, worker: int) -> None:
        self.restarting[self.actors[worker].pid.remote()] = worker

    def _restarted(self, ping: Any) -> None:
        """A worker's process answered after a restart (free again), is still coming up, or is gone for good."""
        worker = self.restarting.pop(ping)
        try:
            self.ray.get(ping)
        except self.unavailable:
            self._ping(worker)
            return
        except self.lost:  # dead for good (killed for good, or it cannot be created): the others go on
            return
        self.idle.append(worker)


def _fatal(cause: BaseException) -> ScaleError:
    """The error that ends the run when a worker's generator raised (not an item's failure)."""
    if isinstance(cause, WorkerFatal):
        return cause
    return ScaleError(f"a worker failed: {describe(cause)}",
                      hint="this is a bug; run again with --debug and report the traceback")


def run_units(units: Sequence[WorkUnit], factory: Callable[[], Handler], plan: WorkerPlan,
              on_result: Callable[[ItemResult], None],
              on_progress: Optional[Callable[[Progress], None]] = None) -> RunReport:
    """Run every unit on `plan.workers` actors of a connected Ray (see fpcli.scale.cluster.connect); `on_result`
    is called on the driver once per item, as it finishes, in completion order."""
    ray = require_ray()
    if not units:
        return RunReport(total=0)
    return _Pool(ray, units, factory, plan, on_result, on_progress).run()
