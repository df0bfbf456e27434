"""fpcli.scale: worker plans, work units, the actor body, and runs on a local Ray instance (kills, errors)."""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from fpcli.errors import InputError
from fpcli.scale import (
    Cluster,
    ScaleError,
    UnitWorker,
    WorkerFatal,
    WorkerPlan,
    WorkUnit,
    connect,
    plan_units,
    plan_workers,
    require_ray,
    run_on_ray,
)
from scale_workers import Echo

CPU = Cluster(None, cpus=2, gpus=0)
GPUS = Cluster("auto", cpus=64, gpus=8)


def test_worker_defaults_one_per_gpu_else_one_on_cpu():
    assert plan_workers(CPU) == WorkerPlan(1, 0.0, 2)  # a local instance's one worker gets both cores
    assert plan_workers(GPUS) == WorkerPlan(8, 1.0, 1)  # a joined cluster: 1 CPU each, whatever the total
    assert plan_workers(GPUS, gpus_per_worker=4) == WorkerPlan(2, 4, 1)  # 72B over 4 GPUs each
    assert plan_workers(GPUS, gpus_per_worker=0.5) == WorkerPlan(16, 0.5, 1)
    assert plan_workers(GPUS, workers=3) == WorkerPlan(3, 1.0, 1)
    assert plan_workers(CPU, workers=2) == WorkerPlan(2, 0.0, 1)


@pytest.mark.parametrize(
    ("cluster", "workers", "gpus", "message"),
    [
        (CPU, None, 1, "the Ray cluster has no GPU, but --gpus-per-worker is 1"),
        (GPUS, 3, 4, "3 worker(s) x 4 GPU(s) do not fit in the Ray cluster's 8 GPU(s)"),
        (GPUS, None, 16, "1 worker(s) x 16 GPU(s) do not fit in the Ray cluster's 8 GPU(s)"),
        (CPU, 3, None, "3 worker(s) need 3 CPU(s); the Ray cluster has 2"),
        (CPU, 0, None, "--workers must be at least 1, got 0"),
        (CPU, None, -1, "--gpus-per-worker must be >= 0, got -1"),
    ],
)
def test_impossible_worker_plans_are_input_errors(cluster, workers, gpus, message):
    with pytest.raises(InputError) as info:
        plan_workers(cluster, workers, gpus)
    assert str(info.value) == message
    assert info.value.exit_code == 2


def test_units_group_by_video_split_past_a_share_largest_first():
    items = [{"id": f"{video}{n}", "video": video} for video, count in (("a", 2), ("b", 5), ("c", 1))
             for n in range(count)]
    units = plan_units(items, key=lambda item: item["video"], ident=lambda item: item["id"], workers=2)
    assert [(unit.key, unit.ids) for unit in units] == [
        ("b", ("b0", "b1", "b2", "b3")),  # b has more than ceil(8 / 2) = 4 items: split
        ("a", ("a0", "a1")),
        ("b", ("b4",)),
        ("c", ("c0",)),
    ]
    one = plan_units(items, key=lambda item: item["video"], ident=lambda item: item["id"], workers=1)
    assert [len(unit) for unit in one] == [5, 2, 1]
    assert one[0].rest(3) == WorkUnit("b", ("b3", "b4"), tuple(items[5:7]))
    with pytest.raises(ValueError, match="unique ids"):
        plan_units(items + items[:1], key=lambda item: item["video"], ident=lambda item: item["id"], workers=1)


def test_unit_worker_fails_one_item_and_goes_on(tmp_path: Path):
    """Without Ray: an ordinary error fails its item only, the handler resumes after it; nothing is tried twice."""
    attempts = tmp_path / "attempts"
    items = ({"id": "x"}, {"id": "y", "fail": True}, {"id": "z"})
    outcomes = list(UnitWorker(functools.partial(Echo, str(attempts))).run(WorkUnit("v", ("x", "y", "z"), items)))
    assert [(o.index, o.error) for o in outcomes] == [(0, None), (1, "ValueError: bad item y"), (2, None)]
    assert [o.value["id"] for o in outcomes if o.value] == ["x", "z"]
    assert attempts.read_text().split() == ["x", "y", "z"]
    fatal = UnitWorker(functools.partial(Echo, str(attempts))).run(WorkUnit("v", ("f",), ({"id": "f", "fatal": 1},)))
    with pytest.raises(WorkerFatal, match="the model cannot load"):
        list(fatal)


def test_missing_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ScaleError) as info:
        require_ray()
    assert str(info.value) == 'Ray is not installed; install it with: pip install "forestprune[ray]"'
    with pytest.raises(ScaleError, match="Ray is not installed"):
        with connect(None):
            pass


@pytest.mark.ray
def test_unreachable_address_is_one_clean_error():
    with pytest.raises(ScaleError) as info:
        with connect("ray://127.0.0.1:1"):
            pass
    assert str(info.value) == "cannot reach the Ray cluster at ray://127.0.0.1:1: connection refused"
    assert "ray start --head" in info.value.hint


def _run(tmp_path: Path, items: list[dict], workers: int, on_result=None, on_progress=None):
    """Run `items` on Echo workers; (results in arrival order, attempts per id, report)."""
    attempts = tmp_path / "attempts"
    results = []

    def collect(result):
        results.append(result)
        if on_result is not None:
            on_result(result)

    report = run_on_ray(items, key=lambda item: item["video"], ident=lambda item: item["id"],
                        factory=functools.partial(Echo, str(attempts)), on_result=collect, workers=workers,
                        on_progress=on_progress)
    return results, Counter(attempts.read_text().split()), report


def _items(videos: int, per_video: int, **extra) -> list[dict]:
    return [{"id": f"v{v}q{q}", "video": f"v{v}.mp4", **extra} for v in range(videos) for q in range(per_video)]


@pytest.mark.ray
def test_results_complete_once_each_video_on_one_worker(local_ray, tmp_path: Path):
    items = _items(4, 3)
    progress = []
    results, attempts, report = _run(tmp_path, items, workers=2, on_progress=progress.append)
    assert sorted(r.id for r in results) == sorted(item["id"] for item in items)
    assert all(r.ok and r.value["id"] == r.id and r.value["key"] == r.item["video"] for r in results)
    assert attempts == Counter({item["id"]: 1 for item in items})
    pids = {video: {r.value["pid"] for r in results if r.item["video"] == video} for video in ("v0.mp4", "v1.mp4")}
    assert all(len(found) == 1 for found in pids.values())  # all of a video's items on one worker
    assert (report.total, report.ok, report.failed, report.requeued, report.worker_deaths) == (12, 12, 0, 0, 0)
    assert sum(report.per_worker.values()) == 12 and set(report.per_worker) == {"worker-0", "worker-1"}
    assert {r.worker for r in results} <= set(report.per_worker)
    assert [p.done for p in progress] == list(range(1, 13)) and {p.total for p in progress} == {12}
    assert progress[-1].done == progress[-1].total and progress[0].per_s > 0


@pytest.mark.ray
def test_killed_worker_loses_nothing_and_redoes_nothing_reported(local_ray, tmp_path: Path):
    """SIGKILL of a worker's process (its pid from its first result) mid-unit: its unreported items run elsewhere."""
    items = _items(2, 4, sleep=0.3)
    killed: list[int] = []

    def kill_first_worker(result):
        if not killed:
            killed.append(result.value["pid"])
            os.kill(killed[0], signal.SIGKILL)

    results, attempts, report = _run(tmp_path, items, workers=2, on_result=kill_first_worker)
    assert Counter(r.id for r in results) == Counter({item["id"]: 1 for item in items})  # each once
    assert all(r.ok for r in results)
    assert (report.worker_deaths, report.failed) == (1, 0) and report.requeued >= 1
    redone = {ident for ident, count in attempts.items() if count > 1}
    assert len(redone) <= 1 and sum(attempts.values()) == len(items) + len(redone)  # only the item in flight
    assert not redone & {r.id for r in results if r.value["pid"] == killed[0]}  # nothing reported is run again
    assert sum(report.per_worker.values()) == len(items)


@pytest.mark.ray
def test_ordinary_error_is_reported_once_not_retried(local_ray, tmp_path: Path):
    items = _items(2, 3)
    items[1]["fail"] = True
    results, attempts, report = _run(tmp_path, items, workers=2)
    failed = [r for r in results if not r.ok]
    assert [(r.id, r.error, r.value) for r in failed] == [("v0q1", "ValueError: bad item v0q1", None)]
    assert attempts == Counter({item["id"]: 1 for item in items})
    assert (report.ok, report.failed) == (5, 1)


@pytest.mark.ray
def test_item_that_kills_its_worker_fails_after_three_deaths(local_ray, tmp_path: Path):
    items = _items(1, 3)
    items[0]["exit"] = True
    results, attempts, report = _run(tmp_path, items, workers=1)
    assert [(r.id, r.ok) for r in results] == [("v0q0", False), ("v0q1", True), ("v0q2", True)]
    assert results[0].error.startswith("the worker process died 3 times while running this item (")
    assert attempts == Counter({"v0q0": 3, "v0q1": 1, "v0q2": 1})
    assert (report.worker_deaths, report.requeued, report.failed) == (3, 3 + 3 + 2, 1)


@pytest.mark.ray
def test_ctrl_c_on_the_driver_stops_the_workers(local_ray, tmp_path: Path):
    items = _items(2, 3, sleep=0.2)
    seen: list = []

    def interrupt_at_second(result):
        seen.append(result)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, items, workers=2, on_result=interrupt_at_second)
    pids = {result.value["pid"] for result in seen}
    deadline = time.monotonic() + 10
    while pids and time.monotonic() < deadline:  # ray.kill is asynchronous: the processes exit soon after
        pids = {pid for pid in pids if _alive(pid)}
        time.sleep(0.1)
    assert not pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.ray
def test_fatal_handler_error_ends_the_run(local_ray, tmp_path: Path):
    items = _items(1, 2)
    items[0]["fatal"] = True
    with pytest.raises(WorkerFatal) as info:
        _run(tmp_path, items, workers=1)
    assert (str(info.value), info.value.hint) == ("the model cannot load", "check the model")
