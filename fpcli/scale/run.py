"""The one call a command makes to run its items on Ray: connect, plan the workers and units, run, disconnect."""

from __future__ import annotations

from typing import Any, Callable, Hashable, Optional, Sequence

from fpcli.scale.cluster import Cluster, WorkerPlan, connect, plan_workers
from fpcli.scale.engine import ItemResult, Progress, RunReport, run_units
from fpcli.scale.units import plan_units
from fpcli.scale.worker import Handler


def run_on_ray(
    items: Sequence[Any],
    *,
    key: Callable[[Any], Hashable],
    ident: Callable[[Any], str],
    factory: Callable[[], Handler],
    on_result: Callable[[ItemResult], None],
    address: Optional[str] = None,
    workers: Optional[int] = None,
    gpus_per_worker: Optional[float] = None,
    on_start: Optional[Callable[[Cluster, WorkerPlan], None]] = None,
    on_progress: Optional[Callable[[Progress], None]] = None,
) -> RunReport:
    """Run `items` grouped into units by `key` (a video) on Ray workers built by `factory` (see
    fpcli.scale.worker for the handler protocol); `on_result` gets each item's result on the driver as it finishes.

    address: None or "local" starts a local Ray instance for the run; "auto" or "ray://host:port" joins a cluster.
    workers / gpus_per_worker: None for the defaults (one worker per GPU with 1 GPU each, else 1 CPU worker).
    The cluster is checked (reachable, large enough) before any worker starts. Ctrl-C kills the workers, stops a
    local instance and propagates; what `on_result` wrote stays.
    """
    with connect(address) as cluster:
        plan = plan_workers(cluster, workers, gpus_per_worker)
        if on_start is not None:
            on_start(cluster, plan)
        units = plan_units(items, key, ident, plan.workers)
        return run_units(units, factory, plan, on_result, on_progress)
