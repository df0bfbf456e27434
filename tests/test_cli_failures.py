"""What a user sees when things go wrong: the end-of-run account of failures (each distinct error, its count and
first item, a re-run hint only where a re-run can help), SIGTERM treated like Ctrl-C, and usage mistakes refused
with exit 2 and their exact message (a forgotten question, a config key the method does not take, jobs files
without items or questions, eval input naming its line)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from fixtures_eval import JSONL_ROWS, make_jsonl
from test_cli_run import write_clip
from typer.testing import CliRunner

from fpcli.cli import app
from fpcli.cli.failures import Failures
from fpcli.cli.signals import sigterm_interrupts
from fpcli.errors import retryable
from fpcli.errors import InputError
from fpcli.video import VideoError

FAST = ["--frames", "2", "--max-new-tokens", "2"]


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("failures") / "a.mp4")


def test_retryable_by_cause():
    assert retryable(VideoError("file not found", "x.mp4"))
    assert not retryable(InputError("the prompt needs 5000 tokens"))
    assert not retryable(ValueError("ratio must be in [0, 1), got 2.0"))
    assert not retryable(KeyError("bug"))


def test_failures_lines_count_distinct_errors_and_hint_only_for_retryable():
    failures = Failures()
    failures.add("file not found (a.mp4)", "item 'a'", True)
    failures.add("bad ratio", "item 'b'", False)
    failures.add("file not found (a.mp4)", "item 'c'", True)
    assert failures.lines("item(s)") == [
        "Failed 2×: file not found (a.mp4) (first: item 'a')",
        "Failed 1×: bad ratio (first: item 'b')",
        "Hint: re-run the same command to retry 2 of the 3 failed item(s); the other 1 fail the same way until their "
        "cause is fixed.",
    ]
    usage_only = Failures()
    usage_only.add("bad ratio", "item 'b'", False)
    assert usage_only.lines("item(s)") == ["Failed 1×: bad ratio (first: item 'b')"]  # no hint: a re-run fails alike


def test_batch_summary_lists_each_error_once(clip, tiny_onevision_dir, tmp_path):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(f"- {{id: gone, video: {tmp_path / 'nope.mp4'}, question: 'Q?'}}\n"
                    f"- {{id: gone2, video: {tmp_path / 'nope.mp4'}, question: 'R?'}}\n"
                    f"- {{id: bad, video: {clip}, question: 'Q?', options: {{ratio: 2}}}}\n")
    result = invoke("batch", jobs, "--model", tiny_onevision_dir, *FAST, "-q")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-3:] == [
        f"Failed 2×: file not found ({tmp_path / 'nope.mp4'}) (first: item 'gone')",
        "Failed 1×: ratio must be in [0, 1), got 2.0 (first: item 'bad')",
        "Hint: re-run the same command to retry 2 of the 3 failed item(s); the other 1 fail the same way until their "
        "cause is fixed.",
    ]
    records = [json.loads(line) for line in (tmp_path / "jobs.results.jsonl").read_text().splitlines()]
    assert [r["retryable"] for r in records] == [True, True, False]


def test_eval_summary_names_the_error_of_missing_videos(tiny_onevision_dir, tmp_path):
    rows = [JSONL_ROWS[0], {**JSONL_ROWS[1], "video": "clips/absent.mp4"}]
    data = make_jsonl(tmp_path / "b", rows)
    result = invoke("eval", "jsonl", "--data", data, "--out", tmp_path / "run", "--model", tiny_onevision_dir, *FAST,
                    "--methods", "none", "--device", "cpu")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert f"Failed 1×: file not found (first: none 0 on jsonl item '{rows[1]['id']}')" in lines
    assert "Hint: re-run the same command to retry the failed prediction(s)." in lines


def test_sigterm_ends_a_batch_like_ctrl_c(clip, tiny_onevision_dir, tmp_path, monkeypatch):
    from fpcli.run import jobs as batch

    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("".join(f"- {{id: j{i}, video: {clip}, question: 'Q{i}?'}}\n" for i in range(3)))
    real = batch.answer_clip

    def terminate_at_second(*args, **kwargs):
        for number, outcome in enumerate(real(*args, **kwargs)):
            if number == 1:
                os.kill(os.getpid(), signal.SIGTERM)
            yield outcome

    monkeypatch.setattr(batch, "answer_clip", terminate_at_second)
    result = invoke("batch", jobs, "--model", tiny_onevision_dir, *FAST)
    assert result.exit_code == 130
    assert "Batch: 1 ok, 0 failed, 0 already done (3 items)" in result.stderr
    assert "Interrupted: 2 item(s) not run; re-run the same command to resume." in result.stderr
    assert signal.getsignal(signal.SIGTERM) is not sigterm_interrupts  # the handler is gone after the batch


def test_sigterm_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), sigterm_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_forgotten_question_is_exit_2(clip):
    for question in ("missing.mp4", "clips/other", "./x.MKV"):
        result = invoke("ask", clip, question, "--model", "/nonexistent")
        assert result.exit_code == 2
        assert result.stderr.splitlines() == [
            f"Error: no such file {question!r}: did you forget the question?",
            "Hint: the last argument is the QUESTION, asked about every VIDEO before it"]


def test_a_config_key_the_method_does_not_take_names_the_file(clip, tmp_path):
    (tmp_path / "c.yaml").write_text("tau-s: 0.5\n")
    (tmp_path / "o.yaml").write_text("opt: [layer=1]\n")
    (tmp_path / "f.yaml").write_text("frames: 2\n")
    for config, name in (("c.yaml", "tau_s"), ("o.yaml", "layer")):
        result = invoke("ask", clip, "What?", "--model", "/nonexistent", "--method", "gprune", "--config",
                        tmp_path / config)
        assert result.exit_code == 2
        assert result.stderr.splitlines()[0] == (
            f"Error: unknown option '{name}' for method 'gprune'; it takes no options (from {tmp_path / config})")
    flag = invoke("ask", clip, "What?", "--model", "/nonexistent", "--method", "gprune", "--tau-s", "0.5",
                  "--config", tmp_path / "f.yaml")  # the flag's own value: the file is not named
    assert flag.stderr.splitlines()[0] == "Error: unknown option 'tau_s' for method 'gprune'; it takes no options"


@pytest.mark.parametrize(("text", "message"), [
    ("", "jobs file has no items"),
    ("jobs: []\n", "jobs file has no items"),
    ("- {video: a.mp4, question: 'Q?'}\n- {video: a.mp4}\n", "item 2 of the jobs file: item has no question (text)"),
    ("- {question: 'Q?'}\n", "item 1 of the jobs file: item has no video (a path)"),
])
def test_jobs_files_without_items_or_questions_are_exit_2(tmp_path, text, message):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(text)
    result = invoke("batch", jobs, "--model", "/nonexistent")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == f"Error: {message} ({jobs})"
    assert not (tmp_path / "jobs.results.jsonl").exists()


def test_eval_input_errors_name_the_line_and_a_missing_data(tmp_path):
    data = make_jsonl(tmp_path / "b")
    data.write_text(json.dumps(JSONL_ROWS[0]) + "\n\n" + json.dumps({**JSONL_ROWS[1], "answer": "Z"}) + "\n")
    result = invoke("eval", "jsonl", "--data", data, "--out", tmp_path / "run", "--model", "/nonexistent")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        f"Error: line 3: item {JSONL_ROWS[1]['id']}: answer 'Z' is not one of its {len(JSONL_ROWS[1]['options'])} "
        f"options ({data})")
    missing = invoke("eval", "jsonl", "--data", tmp_path / "q.jsonl", "--out", tmp_path / "run", "--model", "/x")
    assert missing.exit_code == 2
    assert missing.stderr.splitlines()[0] == (
        f"Error: jsonl: no such file (--data is the .jsonl file of questions) ({tmp_path / 'q.jsonl'})")
