"""`eval --ray`: on a local Ray instance the tiny checkpoint writes the single-process run directory (predictions,
counts, summary), shards merge into the single run, an interrupted Ray run resumes without Ray, and a worker killed
mid-video loses and repeats nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fixtures_eval import JSONL_ROWS, make_jsonl
from typer.testing import CliRunner

from fpcli.cli import app

pytestmark = pytest.mark.ray
runner = CliRunner()
FAST = ["--frames", "2", "--max-new-tokens", "3", "--methods", "none,uniform", "--ratios", "0.5", "--device", "cpu"]
MEASURED = ("timing_s", "peak_memory_mb")  # the only keys a run on other processes may change
ROWS = [*JSONL_ROWS, {"id": "gone", "video": "clips/gone.mp4", "question": "Where?", "options": ["here", "there"],
                      "answer": "A"}]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def predictions(run_dir: Path) -> dict[tuple, dict[str, Any]]:
    """Records by prediction key, without the measured keys; the file holds each key once."""
    records = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    keyed = {(r["id"], r["method"], r["ratio"]): {k: v for k, v in r.items() if k not in MEASURED} for r in records}
    assert len(keyed) == len(records)
    return keyed


def scores(summary: dict[str, Any]) -> dict[str, Any]:
    """What a summary says about the benchmark: not where its run directories are, nor measured times."""
    groups = [{k: v for k, v in group.items() if k not in MEASURED} for group in summary["groups"]]
    return {**{k: v for k, v in summary.items() if k != "run_dirs"}, "groups": groups}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two videos with a question each (one unit per worker at 2 workers) and a question on a missing video."""
    return make_jsonl(tmp_path_factory.mktemp("ray-eval") / "b", ROWS)


@pytest.fixture(scope="module")
def single(data: Path, tiny_onevision_dir: Path) -> Path:
    out = data.parent / "single"
    result = invoke("eval", "jsonl", "--data", data, "--out", out, "--model", tiny_onevision_dir, *FAST)
    assert result.exit_code == 1, result.stderr  # the missing video
    return out


def test_eval_on_ray_writes_the_single_process_run(local_ray, data: Path, tiny_onevision_dir: Path, single: Path,
                                                   tmp_path: Path):
    out = tmp_path / "ray"
    result = invoke("eval", "jsonl", "--data", data, "--out", out, "--model", tiny_onevision_dir, *FAST, "--json",
                    "--ray", "--workers", "2")
    assert result.exit_code == 1, result.stderr
    expected = predictions(single)
    assert predictions(out) == expected  # responses, parsed, correct, tokens, failures: identical
    assert {key[0] for key, r in expected.items() if r["status"] == "ok"} == {"cuts", "move"}
    assert expected[("gone", "none", 0.0)]["kind"] == "missing_video"
    assert scores(json.loads(result.stdout)) == scores(json.loads((single / "summary.json").read_text()))
    run_json = json.loads((out / "run.json").read_text())
    assert (run_json["videos_encoded"], run_json["prefills"], run_json["questions"]) == (2, 4, 4)
    assert "Running on a local Ray instance (2 CPUs, 0 GPUs): 2 worker(s), on CPUs." in result.stderr
    counts = [line for line in result.stderr.splitlines() if line.startswith("Items per worker: ")]
    assert len(counts) == 1 and "worker-0 2" in counts[0] and "worker-1 2" in counts[0]
    assert "Eval: 4 answered, 2 failed, 0 already done" in result.stderr


def test_shards_on_ray_merge_into_the_single_run(local_ray, data: Path, tiny_onevision_dir: Path, single: Path,
                                                 tmp_path: Path):
    shards = [invoke("eval", "jsonl", "--data", data, "--out", tmp_path / f"s{index}", "--shard", f"{index}/2",
                     "--model", tiny_onevision_dir, *FAST, "--ray", "--workers", "1") for index in (1, 2)]
    # videos dealt by path: cuts and move to shard 1, the missing one to shard 2 (which needs no cluster)
    assert [shard.exit_code for shard in shards] == [0, 1], shards[0].stderr + shards[1].stderr
    assert ["Running on a local Ray instance" in shard.stderr for shard in shards] == [True, False]
    merged = invoke("eval", "--merge", tmp_path / "s1", tmp_path / "s2", "--json")
    assert merged.exit_code == 1, merged.stderr
    assert scores(json.loads(merged.stdout)) == scores(json.loads((single / "summary.json").read_text()))
    refused = invoke("eval", "--merge", tmp_path / "s1", tmp_path / "s2", "--ray")
    assert refused.exit_code == 2
    assert refused.stderr.splitlines()[0] == "Error: --merge takes RUN_DIR... (and --out, --json, --plot), not --ray"


def test_interrupted_ray_eval_resumes_without_ray(local_ray, data: Path, tiny_onevision_dir: Path, single: Path,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from fpcli.eval import RunDir

    out = tmp_path / "resumed"
    real_append = RunDir.append

    def append_then_interrupt(self, record):
        real_append(self, record)
        if record["status"] == "ok":
            raise KeyboardInterrupt  # Ctrl-C on the driver once the first answer is written

    monkeypatch.setattr(RunDir, "append", append_then_interrupt)
    args = ("eval", "jsonl", "--data", data, "--out", out, "--model", tiny_onevision_dir, *FAST)
    interrupted = invoke(*args, "--ray", "--workers", "2")
    assert interrupted.exit_code == 130, interrupted.stderr
    done = predictions(out)
    assert len(done) == 3 and all(single_record == done[key] for key, single_record in predictions(single).items()
                                  if key in done)
    monkeypatch.setattr(RunDir, "append", real_append)
    resumed = invoke(*args)
    assert resumed.exit_code == 1, resumed.stderr
    assert "Eval: 3 answered, 2 failed, 1 already done" in resumed.stderr  # the missing video's are retried
    assert predictions(out) == predictions(single)


def test_killed_worker_loses_and_repeats_nothing(local_ray, data: Path, tiny_onevision_dir: Path, single: Path,
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import scale_workers

    from fpcli.run import on_ray

    monkeypatch.setattr(on_ray, "EvalHandler", scale_workers.KilledOnceEval)  # pickled by name: the workers have it
    (data.parent / "killed").unlink(missing_ok=True)
    out = tmp_path / "killed"
    result = invoke("eval", "jsonl", "--data", data, "--out", out, "--model", tiny_onevision_dir, *FAST,
                    "--ray", "--workers", "2")
    assert result.exit_code == 1, result.stderr
    assert (data.parent / "killed").exists()  # a worker did die after its first record
    assert "1 worker death(s)" in result.stderr
    assert predictions(out) == predictions(single)
