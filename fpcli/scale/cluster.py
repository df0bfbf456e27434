"""Joining or starting a Ray cluster, and how many workers it holds.

Ray is an optional dependency, imported only here and only when a command asks for it, so `forestprune --help` and
every single-process run work without it. `connect(None)` starts a local Ray instance for the run (and stops it
after); `connect("auto")` or `connect("ray://host:port")` joins a running cluster (and only disconnects after).
A driver that already called `ray.init` (a library user, the tests) keeps its connection.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from fpcli.scale.errors import ScaleError, ScaleInputError

INSTALL = 'pip install "forestprune[ray]"'
LOCAL = "local"  # `--ray local`: the same as `--ray` without an address
MIN_CPUS_PER_WORKER = 1  # each worker runs one item at a time; torch inside uses the threads Ray gives it
REACH_TIMEOUT_S = 3.0
CLUSTER_HINT = "start one with `ray start --head` (see the README's cluster recipe), or use --ray alone for a local one"


def require_ray() -> Any:
    """The ray module; a one-line error that says how to install it when it is missing."""
    try:
        import ray
    except ImportError as exc:
        raise ScaleError(f"Ray is not installed; install it with: {INSTALL}") from exc
    return ray


@dataclass(frozen=True)
class Cluster:
    """What a run may use: the address it joined (None: a local instance) and the cluster's totals."""

    address: Optional[str]
    cpus: float
    gpus: float

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "cpus": self.cpus, "gpus": self.gpus}


@dataclass(frozen=True)
class WorkerPlan:
    """How many actors a run starts and the GPUs and CPUs each one reserves (0 GPUs: CPU workers). Ray gives an
    actor as many OpenMP threads as the CPUs it reserves, so the CPUs are what torch computes with on a CPU worker."""

    workers: int
    gpus_per_worker: float
    cpus_per_worker: int = MIN_CPUS_PER_WORKER

    def to_dict(self) -> dict[str, Any]:
        return {"workers": self.workers, "gpus_per_worker": self.gpus_per_worker,
                "cpus_per_worker": self.cpus_per_worker}


def plan_workers(cluster: Cluster, workers: Optional[int] = None, gpus_per_worker: Optional[float] = None
                 ) -> WorkerPlan:
    """The defaults (1 GPU per worker on a GPU cluster, else 0; one worker per GPU, else 1) and the checks that
    the cluster can hold the plan: Ray would otherwise leave the actors pending forever."""
    if workers is not None and workers < 1:
        raise ScaleInputError(f"--workers must be at least 1, got {workers}")
    if gpus_per_worker is not None and not gpus_per_worker >= 0:
        raise ScaleInputError(f"--gpus-per-worker must be >= 0, got {gpus_per_worker}")
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if cluster.gpus >= 1 else 0.0
    if gpus_per_worker > 0 and cluster.gpus == 0:
        raise ScaleInputError(f"the Ray cluster has no GPU, but --gpus-per-worker is {gpus_per_worker:g}",
                              hint="use --gpus-per-worker 0 to run on CPUs, or add GPU nodes")
    if workers is None:
        workers = math.floor(cluster.gpus / gpus_per_worker) if gpus_per_worker > 0 else 1
    if workers < 1 or workers * gpus_per_worker > cluster.gpus:
        workers = max(workers, 1)
        raise ScaleInputError(f"{workers} worker(s) x {gpus_per_worker:g} GPU(s) do not fit in the Ray cluster's "
                              f"{cluster.gpus:g} GPU(s)", hint="lower --workers or --gpus-per-worker")
    if workers * MIN_CPUS_PER_WORKER > cluster.cpus:
        raise ScaleInputError(f"{workers} worker(s) need {workers * MIN_CPUS_PER_WORKER} CPU(s); the Ray cluster has "
                              f"{cluster.cpus:g}", hint="lower --workers")
    # A local instance is this one machine: its CPUs are shared out, so one worker computes with as many threads
    # as a single process would. A joined cluster's CPUs spread over nodes that no one actor may exceed: 1 each.
    shared = max(MIN_CPUS_PER_WORKER, math.floor(cluster.cpus / workers))
    return WorkerPlan(workers, gpus_per_worker, shared if cluster.address is None else MIN_CPUS_PER_WORKER)


def _host_port(address: str) -> Optional[tuple[str, int]]:
    """('head', 10001) for 'ray://head:10001' or 'head:6379'; None for 'auto' and other forms Ray resolves."""
    rest = address.removeprefix("ray://")
    host, colon, port = rest.rpartition(":")
    if not colon or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_reachable(address: str) -> None:
    """Fail in seconds, with one line, where Ray itself would retry for a long time or print pages."""
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=REACH_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__.replace("Error", " error").lower()
        raise ScaleError(f"cannot reach the Ray cluster at {address}: {reason.lower()}", hint=CLUSTER_HINT) from exc


def _init(ray: Any, address: Optional[str]) -> None:
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address is None:
            ray.init(include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, TimeoutError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        where = "start a local Ray instance" if address is None else f"connect to the Ray cluster at {address}"
        raise ScaleError(f"cannot {where}: {first}", hint=None if address is None else CLUSTER_HINT) from exc


@contextlib.contextmanager
def connect(address: Optional[str] = None) -> Iterator[Cluster]:
    """Ray connected for the block: None or "local" starts a local instance, "auto" / "ray://host:port" /
    "host:port" join a cluster. What this call started or joined it stops or leaves at the end, also on Ctrl-C."""
    ray = require_ray()
    address = None if address in (None, "", LOCAL) else address
    if address is not None:
        check_reachable(address)
    started = not ray.is_initialized()
    if started:
        _init(ray, address)
    try:
        totals = ray.cluster_resources()
        yield Cluster(address, float(totals.get("CPU", 0)), float(totals.get("GPU", 0)))
    finally:
        if started:
            ray.shutdown()
