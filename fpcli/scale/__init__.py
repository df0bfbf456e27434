"""fpcli.scale: run a command's items over a Ray cluster (or a local Ray instance) instead of one process.

Between the CLI and the layers below it: a command hands over its items, a picklable factory that builds a worker's
handler (in the worker process: a model loads once per worker) and a callback that writes each result on the
driver. Ray is optional (`pip install "forestprune[ray]"`) and imported only when a run asks for it.

    run_on_ray(items, key=video_of, ident=id_of, factory=partial(MyHandler, settings), on_result=log.append)

- cluster.py: connect(address), plan_workers (defaults for --workers and --gpus-per-worker, and their checks)
- units.py:   plan_units (the items of one video in one unit, sized for balance)
- worker.py:  UnitWorker (an actor's body) and the handler protocol
- engine.py:  run_units on a pool of actors, re-queueing what a dead worker had not reported
- run.py:     run_on_ray, all of the above in one call

`batch` and `eval` plug in through fpcli.run.on_ray: the command has `cls=RayCommand` and the options RayAddress,
Workers, GpusPerWorker (fpcli.cli.on_ray; `RaySettings.of` reads them), and fpcli.run.on_ray calls run_on_ray with
the items (batch's jobs, or eval's pending predictions), `key` = the item's clip or video, `ident` = its id, a
factory = functools.partial(BatchHandler or EvalHandler, settings...) whose handler loads the model in the worker
and is `__call__(unit, items)`: a generator yielding one record per item in order (decode and encode the clip once,
then ask each question in its setting's session), and on_result = the results file's or run directory's fsynced
writer. An item's ordinary exception fails only that item; a model that cannot load raises WorkerFatal (ends the
run).
"""

from fpcli.scale.cluster import INSTALL, Cluster, WorkerPlan, connect, plan_workers, require_ray
from fpcli.scale.engine import ItemResult, Progress, RunReport, run_units
from fpcli.scale.errors import ScaleError, ScaleInputError, WorkerFatal
from fpcli.scale.run import run_on_ray
from fpcli.scale.units import WorkUnit, plan_units
from fpcli.scale.worker import Handler, Outcome, UnitWorker

__all__ = [
    "INSTALL",
    "Cluster",
    "Handler",
    "ItemResult",
    "Outcome",
    "Progress",
    "RunReport",
    "ScaleError",
    "ScaleInputError",
    "UnitWorker",
    "WorkUnit",
    "WorkerFatal",
    "WorkerPlan",
    "connect",
    "plan_units",
    "plan_workers",
    "require_ray",
    "run_on_ray",
    "run_units",
]
