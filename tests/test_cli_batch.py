"""batch: jobs files, ids, the results log (resume, crash recovery, Ctrl-C), failing items, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fpcli.cli import app
from fpcli.cli.results_log import ResultsLog
from fpcli.run.jobs import job_id, read_jobs
from fpcli.errors import InputError
from test_cli_run import ANSWER_KEYS, assert_rounded, load_calls, write_clip  # noqa: F401 (a fixture)

runner = CliRunner()
FAST = ["--frames", "2", "--max-new-tokens", "2"]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def records(path: Path) -> list[dict]:
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("batch-clips")
    write_clip(root / "a.mp4")
    write_clip(root / "sub" / "b.mp4", frames=5)
    return root


def write_jobs(directory: Path, clips: Path) -> Path:
    """Four items: two good ones (one with its own options), a missing video (in `directory`, the test's own
    folder, so that a test may create it without touching the shared clips), an invalid option."""
    jobs = directory / "jobs.yaml"
    jobs.write_text(
        f"- {{id: first, video: {clips / 'a.mp4'}, question: 'What is the man doing?'}}\n"
        f"- {{id: second, video: {clips / 'sub' / 'b.mp4'}, question: Describe the scene.,"
        f" options: {{method: uniform, ratio: 0.5, frames: 3}}}}\n"
        f"- {{id: missing, video: {directory / 'nope.mp4'}, question: 'Where?'}}\n"
        f"- {{id: bad-option, video: {clips / 'a.mp4'}, question: 'Why?', options: {{ratio: 2}}}}\n"
    )
    return jobs


def test_read_jobs_yaml_and_jsonl(tmp_path: Path):
    (tmp_path / "jobs.yaml").write_text(
        "jobs:\n"
        "  - {video: clips/a.mp4, question: 'What?', options: {ratio: 0.5}}\n"
        "  - {id: 7, video: /abs/b.mp4, question: 'Why?'}\n"
    )
    jobs = read_jobs(tmp_path / "jobs.yaml")
    assert jobs[0].video == tmp_path / "clips" / "a.mp4"  # relative to the jobs file
    assert jobs[0].id == job_id({"video": "clips/a.mp4", "question": "What?", "options": {"ratio": 0.5}})
    assert len(jobs[0].id) == 12 and jobs[0].options == {"ratio": 0.5}
    assert (jobs[1].id, jobs[1].video) == ("7", Path("/abs/b.mp4"))
    for bad, problem in [
        ("{video: a.mp4}", "item has no question (text)"),
        ("{video: a.mp4, question: 'What?', speed: 2}",
         "unknown key 'speed' (an item has video, question, id, options; per-item settings go in options)"),
        ("just text", "item must be a mapping with video and question, got 'just text'"),
    ]:
        (tmp_path / "bad.yaml").write_text(f"- {{video: a.mp4, question: 'Q?'}}\n- {bad}\n")
        with pytest.raises(InputError) as err:
            read_jobs(tmp_path / "bad.yaml")
        assert (err.value.what, err.value.exit_code) == (f"item 2 of the jobs file: {problem}", 2)
    (tmp_path / "jobs.jsonl").write_text(
        '{"video": "clips/a.mp4", "question": "What?", "options": {"ratio": 0.5}}\n'
        '\n'
        '{"video": "b.mp4", "question": "Q"}\n'
    )
    from_jsonl = read_jobs(tmp_path / "jobs.jsonl")
    assert [job.id for job in from_jsonl][0] == jobs[0].id  # the default id depends on content only
    assert len(from_jsonl) == 2


def test_default_id_ignores_order_and_formatting():
    a = {"question": "What?", "video": "a.mp4", "options": {"ratio": 0.5, "frames": 8}}
    b = {"video": "a.mp4", "options": {"frames": 8, "ratio": 0.5}, "question": "What?"}
    assert job_id(a) == job_id(b) != job_id({**a, "question": "Why?"})
    assert job_id({"video": "a.mp4", "question": "Q"}) == job_id({"video": "a.mp4", "question": "Q", "options": {}})


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("jobs.jsonl", '{"video": "a.mp4", "question": "Q"}\n{"video": oops}\n',
         "line 2 of the jobs file is not valid JSON"),
        ("jobs.yaml", "video: [a.mp4\n", "jobs file is not valid YAML"),
        ("jobs.yaml", "video: a.mp4\n", "jobs file must hold a list of items"),
        ("jobs.yaml", "- {id: x, video: a.mp4, question: Q}\n- {id: x, video: b.mp4, question: Q}\n",
         "duplicate item id 'x'"),
    ],
)
def test_unusable_jobs_file_is_usage_error(tmp_path: Path, name: str, text: str, message: str):
    jobs = tmp_path / name
    jobs.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        read_jobs(jobs)
    assert info.value.exit_code == 2
    result = invoke("batch", jobs, "--model", "/nonexistent/model")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {message}") and f"({jobs})" in result.stderr
    assert not (tmp_path / "jobs.results.jsonl").exists()


def test_results_log_recovers_from_a_crash(tmp_path: Path):
    out = tmp_path / "results.jsonl"
    ok = {"id": "a", "status": "ok", "answer": "x"}
    other = {"id": "zz", "status": "error", "error": "kept: not in this jobs file"}
    out.write_text(
        json.dumps(ok) + "\n"
        + json.dumps({"id": "b", "status": "error", "error": "boom"}) + "\n"
        + json.dumps(other) + "\n"
        + json.dumps({"id": "a", "status": "ok", "answer": "duplicate"}) + "\n"
        + '{"id": "c", "status": "ok", "ans'  # a hard crash cut this line short
    )
    log = ResultsLog(out, {"a", "b", "c"})
    try:
        assert log.done == {"a": ok}
        assert (log.retrying, log.truncated, log.unreadable) == (1, True, 0)
        assert records(out) == [ok, other]
        log.append({"id": "b", "status": "ok"})
    finally:
        log.close()
    assert records(out) == [ok, other, {"id": "b", "status": "ok"}]


def test_batch_records_failures_and_resumes(clips: Path, tiny_onevision_dir: Path, tmp_path: Path):
    jobs = write_jobs(tmp_path, clips)
    first = invoke("batch", jobs, "--model", tiny_onevision_dir, *FAST)
    assert first.exit_code == 1, first.stderr
    out = tmp_path / "jobs.results.jsonl"  # the default --out
    by_id = {r["id"]: r for r in records(out)}
    assert list(by_id) == ["first", "second", "missing", "bad-option"]
    assert [r["status"] for r in by_id.values()] == ["ok", "ok", "error", "error"]
    assert set(by_id["first"]) == {"id", "status", "settings", *ANSWER_KEYS}
    assert (by_id["first"]["method"], by_id["first"]["ratio"], by_id["first"]["frames"]) == ("forestprune", 0.9, 2)
    assert (by_id["second"]["method"], by_id["second"]["ratio"], by_id["second"]["frames"]) == ("uniform", 0.5, 3)
    assert set(by_id["missing"]) == {"id", "status", "video", "question", "error", "retryable"}
    assert by_id["missing"]["error"] == f"file not found ({tmp_path / 'nope.mp4'})"
    assert by_id["bad-option"]["error"] == "ratio must be in [0, 1), got 2.0"
    assert "Batch: 2 ok, 2 failed, 0 already done (4 items)" in first.stderr
    assert first.stdout == ""
    assert_rounded(by_id["first"])

    # Fix the two bad items; a rerun retries only them, and the file keeps one record per item.
    write_clip(tmp_path / "nope.mp4", frames=3)
    jobs.write_text(jobs.read_text().replace("{ratio: 2}", "{ratio: 0.2}"))
    kept = out.read_text().splitlines()[:2]
    second = invoke("batch", jobs, "--model", tiny_onevision_dir, *FAST, "--out", out)
    assert second.exit_code == 0, second.stderr
    lines = out.read_text().splitlines()
    assert lines[:2] == kept  # done items untouched, byte for byte
    assert [json.loads(line)["id"] for line in lines] == ["first", "second", "missing", "bad-option"]
    assert all(json.loads(line)["status"] == "ok" for line in lines)
    assert "Batch: 2 ok, 0 failed, 2 already done (4 items)" in second.stderr


def test_batch_resumes_after_interrupted_run(clips: Path, tiny_onevision_dir: Path, tmp_path: Path):
    """A results file with one done item and a last line cut short by a crash: only the rest runs."""
    jobs = tmp_path / "jobs.jsonl"
    items = [{"id": f"q{i}", "video": str(clips / "a.mp4"), "question": f"Question {i}?"} for i in range(3)]
    jobs.write_text("".join(json.dumps(item) + "\n" for item in items))
    out = tmp_path / "out" / "results.jsonl"
    done = invoke("batch", jobs, "--model", tiny_onevision_dir, *FAST, "--out", out, "--quiet")
    assert done.exit_code == 0, done.stderr
    first_line = out.read_text().splitlines()[0]
    out.write_text(first_line + "\n" + first_line.replace('"q0"', '"q1"')[:40])
    resumed = invoke("batch", jobs, "--model", tiny_onevision_dir, *FAST, "--out", out)
    assert resumed.exit_code == 0, resumed.stderr
    assert "Dropped the cut-short last line" in resumed.stderr
    assert f"Resuming {out}: 1 of 3 items already done, 0 failed item(s) to retry." in resumed.stderr.splitlines()
    assert "Batch: 2 ok, 0 failed, 1 already done (3 items)" in resumed.stderr
    assert [r["id"] for r in records(out)] == ["q0", "q1", "q2"]
    again = invoke("batch", jobs, "--model", tiny_onevision_dir, *FAST, "--out", out)  # all done: no model loads
    assert again.exit_code == 0
    assert "Batch: 0 ok, 0 failed, 3 already done (3 items)" in again.stderr and "Loaded" not in again.stderr
    other = invoke("batch", jobs, "--model", "/nonexistent/model", *FAST, "--out", out)  # made with another model
    assert other.exit_code == 2
    assert other.stderr.startswith(f'Error: {out} (item \'q0\') was made with model "{tiny_onevision_dir}", this '
                                   'run has model "/nonexistent/model"\n')


def test_batch_ctrl_c_leaves_a_consistent_file(clips: Path, tiny_onevision_dir: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch):
    from fpcli.run import jobs as batch_jobs

    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("".join(f"- {{id: j{i}, video: {clips / 'a.mp4'}, question: 'Q{i}?'}}\n" for i in range(3)))
    real = batch_jobs.answer_clip

    def interrupt_second(*args, **kwargs):  # the three items are one clip's unit: Ctrl-C while answering the second
        for number, outcome in enumerate(real(*args, **kwargs)):
            if number == 1:
                raise KeyboardInterrupt
            yield outcome

    monkeypatch.setattr(batch_jobs, "answer_clip", interrupt_second)
    result = invoke("batch", jobs, "--model", tiny_onevision_dir, *FAST)
    assert result.exit_code == 130
    assert "Interrupted: 2 item(s) not run; re-run the same command to resume." in result.stderr
    assert [r["id"] for r in records(tmp_path / "jobs.results.jsonl")] == ["j0"]


def test_items_that_cannot_run_load_no_model(clips: Path, tiny_onevision_dir: Path, tmp_path: Path,
                                             load_calls: list[tuple]):
    """Bad options, a missing or undecodable video: recorded without a model load; it loads at the first good item,
    once. An item with method none and no ratio anywhere keeps every token."""
    (tmp_path / "notes.mp4").write_text("not a video\n")
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(
        f"- {{id: bad-option, video: {clips / 'a.mp4'}, question: Q, options: {{method: nope}}}}\n"
        f"- {{id: missing, video: {tmp_path / 'nope.mp4'}, question: Q}}\n"
        f"- {{id: not-a-video, video: {tmp_path / 'notes.mp4'}, question: Q}}\n"
    )
    out = tmp_path / "results.jsonl"
    failing = invoke("batch", jobs, "--model", tiny_onevision_dir, *FAST, "--out", out)
    assert failing.exit_code == 1
    failed = records(out)
    assert [r["status"] for r in failed] == ["error"] * 3
    assert failed[0]["error"] == (
        "unknown method 'nope'; available: none, uniform, random, gprune, divprune, dycoke, forestprune, visionzip, "
        "vidcom2, fastvid, holitom, flashvid, fastv, framefusion, sttm")
    assert failed[1]["error"] == f"file not found ({tmp_path / 'nope.mp4'})"
    assert failed[2]["error"].startswith("not a video file ffmpeg can read (")
    assert failed[2]["error"].endswith(f") ({tmp_path / 'notes.mp4'})")
    assert load_calls == [] and "Loaded" not in failing.stderr
    with jobs.open("a") as more:
        more.write(f"- {{id: all, video: {clips / 'a.mp4'}, question: Q, options: {{method: none}}}}\n"
                   f"- {{id: again, video: {clips / 'a.mp4'}, question: Q}}\n")
    rerun = invoke("batch", jobs, "--model", tiny_onevision_dir, *FAST, "--out", out)
    assert rerun.exit_code == 1
    by_id = {r["id"]: r for r in records(out)}
    assert [by_id[i]["status"] for i in ("bad-option", "missing", "not-a-video", "all", "again")] == [
        "error", "error", "error", "ok", "ok"]
    assert len(load_calls) == 1
    assert (by_id["all"]["ratio"], by_id["again"]["ratio"]) == (0.0, 0.9)
    assert by_id["all"]["tokens"]["visual_after"] == by_id["all"]["tokens"]["visual_before"]


def test_batch_model_failure_is_fatal(clips: Path, tmp_path: Path):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(f"- {{video: {clips / 'a.mp4'}, question: 'Q?'}}\n")
    result = invoke("batch", jobs, "--model", tmp_path / "empty-dir", "--out", tmp_path / "r.jsonl")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [  # the model error ends the batch: no item recorded, no summary
        f"Writing results to {tmp_path / 'r.jsonl'}.",
        f"Error: model '{tmp_path / 'empty-dir'}' is not a profile (llava-ov-0.5b, llava-ov-7b, llava-ov-72b, "
        "llava-video-7b, qwen2.5-vl-3b, qwen2.5-vl-7b, qwen3-vl-2b, qwen3-vl-4b, qwen3-vl-8b), a local directory or a "
        "Hugging Face id",
    ]
    assert (tmp_path / "r.jsonl").read_text() == ""


def test_batch_out_must_differ_from_jobs(tmp_path: Path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("")
    result = invoke("batch", jobs, "--out", jobs)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"Error: --out must not be the jobs file ({jobs})"]


def test_item_bars_show_the_throughput():
    from rich.progress import Progress

    from fpcli.cli.progress import _Amount

    clock = iter([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    bars = Progress(get_time=lambda: next(clock))
    items = bars.add_task("Batch", total=10, items=True)
    frames = bars.add_task("Decoding frames", total=10)
    for task in (items, items, frames):
        bars.advance(task)
    column = _Amount()
    assert column.render(bars.tasks[items]).plain == " 2/10 1.00 items/s"
    assert column.render(bars.tasks[frames]).plain == " 1/10"
