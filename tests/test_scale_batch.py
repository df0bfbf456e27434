"""`batch --ray`: the tiny checkpoint on a local Ray instance gives the single-process results file, and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fpcli.cli import app
from test_cli_run import write_clip

pytestmark = pytest.mark.ray
runner = CliRunner()
FAST = ["--frames", "2", "--max-new-tokens", "3", "--quiet"]
# The only keys a run on other processes may change: measurements, and whether the feature cache had the clip
# (a resumed run finds what the interrupted one stored).
MEASURED = ("timing_s", "peak_memory_mb", "cache")


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def by_id(path: Path) -> dict[str, dict]:
    """Records by id, without the measured keys; the file holds each id once."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len({r["id"] for r in records}) == len(records)
    return {r["id"]: {k: v for k, v in r.items() if k not in MEASURED} for r in records}


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven items on three videos (one missing), two with their own options."""
    root = tmp_path_factory.mktemp("ray-batch")
    write_clip(root / "a.mp4")
    write_clip(root / "b.mp4", frames=5)
    items = [{"id": f"a{i}", "video": "a.mp4", "question": f"What happens, {i}?"} for i in range(3)]
    items += [{"id": "b0", "video": "b.mp4", "question": "Describe it.", "options": {"method": "uniform"}},
              {"id": "b1", "video": "b.mp4", "question": "Why?", "options": {"ratio": 0.5, "max_new_tokens": 5}},
              {"id": "b2", "video": "b.mp4", "question": "Where?"},
              {"id": "gone", "video": "missing.mp4", "question": "What?"}]
    path = root / "jobs.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


@pytest.fixture(scope="module")
def single(jobs: Path, tiny_onevision_dir: Path) -> dict[str, dict]:
    out = jobs.with_name("single.jsonl")
    result = invoke("batch", jobs, "--model", tiny_onevision_dir, *FAST, "--out", out)
    assert result.exit_code == 1, result.stderr  # the missing video
    return by_id(out)


def test_batch_on_ray_writes_the_single_process_results(local_ray, jobs: Path, tiny_onevision_dir: Path,
                                                         single: dict[str, dict], tmp_path: Path):
    out = tmp_path / "ray.jsonl"
    result = invoke("batch", jobs, "--model", tiny_onevision_dir, "--frames", "2", "--max-new-tokens", "3",
                    "--out", out, "--ray", "--workers", "2")
    assert result.exit_code == 1, result.stderr
    assert by_id(out) == single  # answers, token counts, per-frame kept, errors: all identical
    assert single["gone"]["status"] == "error" and single["b1"]["tokens"]["generated"] <= 5
    assert "Running on a local Ray instance (2 CPUs, 0 GPUs): 2 worker(s), on CPUs." in result.stderr
    counts = [line for line in result.stderr.splitlines() if line.startswith("Items per worker: ")]
    assert len(counts) == 1 and "worker-0 " in counts[0] and "worker-1 " in counts[0]
    assert "Batch: 6 ok, 1 failed, 0 already done (7 items)" in result.stderr


def test_interrupted_ray_run_resumes_without_ray(local_ray, jobs: Path, tiny_onevision_dir: Path,
                                                 single: dict[str, dict], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch):
    from fpcli.cli.results_log import ResultsLog

    out = tmp_path / "resumed.jsonl"
    real_append = ResultsLog.append

    def append_then_interrupt(self, record):
        real_append(self, record)
        if len(out.read_text().splitlines()) == 2:
            raise KeyboardInterrupt  # Ctrl-C on the driver after two results were written

    monkeypatch.setattr(ResultsLog, "append", append_then_interrupt)
    interrupted = invoke("batch", jobs, "--model", tiny_onevision_dir, *FAST, "--out", out, "--ray")
    assert interrupted.exit_code == 130, interrupted.stderr
    done = by_id(out)
    assert len(done) == 2 and all(single[ident] == record for ident, record in done.items())
    monkeypatch.setattr(ResultsLog, "append", real_append)
    resumed = invoke("batch", jobs, "--model", tiny_onevision_dir, "--frames", "2", "--max-new-tokens", "3",
                     "--out", out)
    assert resumed.exit_code == 1, resumed.stderr
    assert "Resuming" in resumed.stderr and "Batch: 4 ok, 1 failed, 2 already done (7 items)" in resumed.stderr
    assert by_id(out) == single


def test_ray_usage_and_address_errors(jobs: Path, tmp_path: Path):
    alone = invoke("batch", jobs, "--model", "/nonexistent", "--workers", "2", "--out", tmp_path / "o.jsonl")
    assert alone.exit_code == 2
    assert alone.stderr.splitlines()[0] == "Error: --workers and --gpus-per-worker need --ray"
    far = invoke("batch", jobs, "--model", "/nonexistent", "--out", tmp_path / "o.jsonl", "--ray", "ray://127.0.0.1:1")
    assert far.exit_code == 1
    lines = far.stderr.splitlines()
    assert "Error: cannot reach the Ray cluster at ray://127.0.0.1:1: connection refused" in lines
    assert lines[-1].startswith("Hint: start one with `ray start --head`")


def test_ray_alone_means_a_local_instance():
    from typer.main import get_command

    command = get_command(app).commands["batch"]

    def parsed(*args: str) -> tuple:
        params = command.make_context("batch", list(args)).params
        return params["ray"], params["workers"]

    assert parsed("jobs.yaml", "--ray") == ("local", None)
    assert parsed("jobs.yaml", "--ray", "--workers", "2") == ("local", 2)
    assert parsed("jobs.yaml", "--ray", "auto", "--workers", "3") == ("auto", 3)
    assert parsed("jobs.yaml", "--ray=ray://head:10001") == ("ray://head:10001", None)
    assert parsed("jobs.yaml") == (None, None)


def test_model_that_cannot_load_on_a_worker_ends_the_batch_like_one_process(local_ray, jobs: Path, tmp_path: Path):
    args = ("batch", jobs, "--model", tmp_path / "no-model", "--frames", "2")
    single = invoke(*args, "--out", tmp_path / "single.jsonl")
    on_ray = invoke(*args, "--out", tmp_path / "ray.jsonl", "--ray")
    assert single.exit_code == on_ray.exit_code == 1
    error = [line for line in single.stderr.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and error[0] in on_ray.stderr.splitlines()
    assert on_ray.stdout == ""
