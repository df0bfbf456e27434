"""Runs you can trust: batch and eval refuse to resume results made with other settings (exit 2, naming the
setting and both values), --force-new starts over, --merge refuses differing runs, and every JSON form records the
settings and the method's complete options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_eval import make_jsonl
from test_cli_run import QUESTION, json_lines, write_clip
from typer.testing import CliRunner

from fpcli.cli import app

BATCH = ["--max-new-tokens", "2"]
EVAL = ["--max-new-tokens", "2", "--methods", "none,uniform", "--ratios", "0.5", "--device", "cpu"]
FOREST_DEFAULTS = {"tau_s": 0.9, "tau_p": 0.8, "node_ratio": 0.5}  # fpcli.prune.builtin, from the paper's settings


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("resume") / "a.mp4")


def jobs(tmp_path: Path, clip: Path) -> Path:
    path = tmp_path / "jobs.yaml"
    path.write_text(f"- {{id: one, video: {clip}, question: 'What?'}}\n"
                    f"- {{id: two, video: {clip}, question: 'Why?', options: {{ratio: 0.5, tau_s: 0.7}}}}\n")
    return path


def invoke(*args: object, input: str | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_batch_records_settings_and_refuses_a_resume_with_other_ones(clip, tiny_onevision_dir, tmp_path):
    out = tmp_path / "r.jsonl"
    first = invoke("batch", jobs(tmp_path, clip), "--model", tiny_onevision_dir, "--frames", "2", *BATCH, "--out", out)
    assert first.exit_code == 0, first.stderr
    one, two = records(out)
    assert one["method_options"] == FOREST_DEFAULTS
    assert two["method_options"] == {**FOREST_DEFAULTS, "tau_s": 0.7}
    assert one["settings"]["checkpoint"].startswith(f"{tiny_onevision_dir.resolve()}#")
    assert {k: v for k, v in two["settings"].items() if k != "checkpoint"} == {
        "model": str(tiny_onevision_dir), "layout": "onevision", "dtype": "float32", "frames": 2, "fps": None,
        "max_pixels": None, "index_rule": "round", "method": "forestprune",
        "method_options": {**FOREST_DEFAULTS, "tau_s": 0.7}, "ratio": 0.5, "budget": None, "protocol": None,
        "prompts": None, "max_new_tokens": 2, "temperature": 0.0, "seed": 0}
    before = out.read_text()
    for extra, message in [
        (["--frames", "3"], "was made with frames 2, this run has frames 3"),
        (["--frames", "2", "--ratio", "0.7"], "was made with ratio 0.9, this run has ratio 0.7"),
        (["--frames", "2", "--tau-p", "0.5"], 'was made with method_options {"node_ratio": 0.5, "tau_p": 0.8, '
                                              '"tau_s": 0.9}, this run has method_options {"node_ratio": 0.5, '
                                              '"tau_p": 0.5, "tau_s": 0.9}'),
        (["--frames", "2", "--dtype", "bfloat16", "--seed", "1"],
         "was made with dtype \"float32\", this run has dtype \"bfloat16\" (and 1 other setting)"),
    ]:
        again = invoke("batch", tmp_path / "jobs.yaml", "--model", tiny_onevision_dir, *extra, *BATCH, "--out", out)
        assert again.exit_code == 2, again.stderr
        assert again.stderr.splitlines() == [
            f"Error: {out} (item 'one') {message}",
            "Hint: give a new --out to keep both, or add --force-new to start this results file over"]
        assert out.read_text() == before  # refused before anything was touched
    same = invoke("batch", tmp_path / "jobs.yaml", "--model", tiny_onevision_dir, "--frames", "2", *BATCH, "--out", out)
    assert same.exit_code == 0 and "2 already done" in same.stderr
    fresh = invoke("batch", tmp_path / "jobs.yaml", "--model", tiny_onevision_dir, "--frames", "3", *BATCH, "--out",
                   out, "--force-new")
    assert fresh.exit_code == 0, fresh.stderr
    assert "0 already done" in fresh.stderr
    assert [r["settings"]["frames"] for r in records(out)] == [3, 3]


def test_eval_refuses_a_resume_with_other_frames_and_records_settings(tiny_onevision_dir, tmp_path):
    data = make_jsonl(tmp_path / "b")
    run = tmp_path / "run"
    first = invoke("eval", "jsonl", "--data", data, "--out", run, "--model", tiny_onevision_dir, "--frames", "2", *EVAL)
    assert first.exit_code == 0, first.stderr
    settings = json.loads((run / "settings.json").read_text())
    assert (settings["frames"], settings["index_rule"], settings["protocol"], settings["max_new_tokens"]) == (
        2, "floor", "paper", 2)
    predictions = records(run / "predictions.jsonl")
    assert all(p["settings"] == settings for p in predictions)
    assert {p["method"]: p["method_options"] for p in predictions} == {"none": {}, "uniform": {}}
    again = invoke("eval", "jsonl", "--data", data, "--out", run, "--model", tiny_onevision_dir, "--frames", "3",
                   "--max-new-tokens", "2", "--methods", "none,forestprune", "--ratios", "0.5", "--device", "cpu")
    assert again.exit_code == 2
    assert again.stderr.splitlines() == [
        f"Error: the run in {run} was made with frames 2, this run has frames 3",
        "Hint: give a new --out to keep both, or add --force-new to start this run directory over"]
    longer = invoke("eval", "jsonl", "--data", data, "--out", run, "--model", tiny_onevision_dir, "--frames", "2",
                    *EVAL, "--max-new-tokens", "5")
    assert longer.exit_code == 2
    assert longer.stderr.startswith(f"Error: the run in {run} was made with max_new_tokens 2, this run has "
                                    "max_new_tokens 5\n")
    fresh = invoke("eval", "jsonl", "--data", data, "--out", run, "--model", tiny_onevision_dir, "--frames", "3",
                   *EVAL, "--force-new")
    assert fresh.exit_code == 0, fresh.stderr
    assert "Eval: 4 answered, 0 failed, 0 already done" in fresh.stderr
    assert json.loads((run / "settings.json").read_text())["frames"] == 3


def test_merge_refuses_shards_run_with_other_settings(tiny_onevision_dir, tmp_path):
    data = make_jsonl(tmp_path / "b")
    for index, frames in ((1, "2"), (2, "3")):
        result = invoke("eval", "jsonl", "--data", data, "--out", tmp_path / f"s{index}", "--shard", f"{index}/2",
                        "--model", tiny_onevision_dir, "--frames", frames, *EVAL)
        assert result.exit_code == 0, result.stderr
    forced = invoke("eval", "--merge", tmp_path / "s1", tmp_path / "s2", "--force-new")
    assert forced.exit_code == 2
    assert forced.stderr.startswith("Error: --merge takes RUN_DIR... (and --out, --json, --plot), not --force-new\n")
    merged = invoke("eval", "--merge", tmp_path / "s1", tmp_path / "s2")
    assert merged.exit_code == 2
    assert merged.stderr.splitlines() == [
        f"Error: the run in {tmp_path / 's1'} was made with frames 2, the run in {tmp_path / 's2'} has frames 3",
        "Hint: merge only runs made with the same settings (shards of one run, or benchmarks run alike)"]


def test_ask_compare_and_chat_json_carry_method_options(clip, tiny_onevision_dir):
    ask = invoke("ask", clip, QUESTION, "--model", tiny_onevision_dir, "--frames", "2", "--max-new-tokens", "2",
                 "--compare", "none,random,sttm", "--opt", "layer=1", "--tau-s", "0.8", "--json")
    assert ask.exit_code == 0, ask.stderr
    assert {r["method"]: r["method_options"] for r in json_lines(ask.stdout)} == {
        "forestprune": {**FOREST_DEFAULTS, "tau_s": 0.8}, "none": {}, "random": {"seed": 0},
        "sttm": {"layer": 1, "tau_s": 0.8, "tau_t": 0.6, "root_level": 1}}  # --tau-s goes to each method taking it
    chat = invoke("chat", clip, "--model", tiny_onevision_dir, "--frames", "2", "--max-new-tokens", "2", "--method",
                  "framefusion", "--json", input="What?\n")
    assert chat.exit_code == 0, chat.stderr
    assert json_lines(chat.stdout)[0]["method_options"] == {"S_threshold": 0.6, "N_threshold": 0.1}
