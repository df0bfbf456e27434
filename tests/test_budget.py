"""--budget K: K visual tokens in total whatever the frame count, on ask, stats, chat and batch (and per batch item),
for methods before and inside the LLM, on LLaVA and Qwen-VL: the arithmetic (prune's exact K, the effective ratio
1 - K/N reported beside the budget) and its errors (exclusive with --ratio, more than the tokens there are: exit 2
with the numbers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from test_cli_cache import invoke
from test_cli_run import QUESTION, json_lines, write_clip

from fpcli.prune import prune
from fpcli.prune.registry import budget_ratio, keep_count
from fpcli.run.settings import RunSettings

FAST = ["--frames", "2", "--max-new-tokens", "2"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("budget") / "a.mp4")


@given(total=st.integers(1, 10**7), data=st.data())
def test_the_effective_ratio_gives_the_budget_back(total, data):
    budget = data.draw(st.integers(1, total))
    assert keep_count(budget_ratio(budget, total), total) == budget


@pytest.mark.parametrize("method", ["uniform", "forestprune", "dycoke"])
def test_prune_keeps_exactly_the_budget(method):
    features = torch.randn(3, 16, 8, generator=torch.Generator().manual_seed(0))  # [T, N, D], 48 tokens
    pruned = prune(features, (4, 4), method=method, budget=7)
    assert (pruned.k, len(pruned.keep), int(pruned.per_frame.sum())) == (7, 7, 7)
    assert pruned.ratio == 1 - 7 / 48


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": 0.5, "budget": 7}, "give ratio or budget, not both and not neither"),
        ({}, "give ratio or budget, not both and not neither"),
        ({"budget": 49}, "the budget of 49 visual tokens exceeds the 48 there are"),
        ({"budget": 0}, "budget must be an int >= 1, got 0"),
        ({"budget": 2.0}, "budget must be an int >= 1, got 2.0"),
    ],
)
def test_prune_budget_errors(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        prune(torch.randn(3, 16, 8), (4, 4), method="uniform", **kwargs)


def test_settings_carry_the_budget_and_a_batch_item_may_set_its_own():
    settings = RunSettings(budget=100)
    settings.check()
    assert settings.pruning() == {"ratio": None, "budget": 100}
    assert RunSettings(budget=100, compare=("none",)).pruning("none") == {"ratio": 0.0, "budget": None}
    assert settings.override({"budget": 50}).budget == 50
    assert settings.override({"ratio": 0.5}).pruning() == {"ratio": 0.5, "budget": None}
    assert RunSettings(ratio=0.5).override({"budget": 50}).pruning() == {"ratio": None, "budget": 50}
    with pytest.raises(ValueError, match="^give --ratio or --budget, not both$"):
        settings.override({"budget": 50, "ratio": 0.5})
    with pytest.raises(ValueError, match="^option 'budget' must be int, got 0.5$"):
        settings.override({"budget": 0.5})
    with pytest.raises(ValueError, match="^method 'none' keeps every token; give no budget$"):
        RunSettings(budget=100, method="none").check()


@pytest.mark.parametrize("method", ["forestprune", "fastv"])
@pytest.mark.parametrize("family", ["tiny_onevision_dir", "tiny_qwen25_dir"])
def test_ask_keeps_the_budget_and_reports_the_effective_ratio(clip, request, family, method):
    options = ["--opt", "K=1"] if method == "fastv" else []
    result = invoke("ask", clip, QUESTION, "--model", request.getfixturevalue(family), *FAST, "--method", method,
                    *options, "--budget", 11, "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    visual = record["tokens"]["visual_before"]  # 2 frames: 2 x 8 x 8 (onevision), one temporal group (Qwen)
    assert visual == {"tiny_onevision_dir": 128, "tiny_qwen25_dir": 54}[family]
    assert (record["budget"], record["ratio"]) == (11, 1 - 11 / visual)
    assert record["tokens"]["visual_in_llm"][-1]["visual"] == record["tokens"]["visual_after"] == 11


def test_ask_without_budget_reports_null(clip, tiny_onevision_dir):
    result = invoke("ask", clip, QUESTION, "--model", tiny_onevision_dir, *FAST, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["budget"] is None


def test_compare_runs_none_unpruned_beside_the_budget(clip, tiny_onevision_dir):
    result = invoke("ask", clip, QUESTION, "--model", tiny_onevision_dir, *FAST, "--compare", "none,uniform,fastv",
                    "--opt", "K=1", "--budget", 20, "--json")
    assert result.exit_code == 0, result.stderr
    records = {r["method"]: r for r in json_lines(result.stdout)}
    assert {m: (r["budget"], r["tokens"]["visual_in_llm"][-1]["visual"]) for m, r in records.items()} == {
        "forestprune": (20, 20), "none": (None, 128), "uniform": (20, 20), "fastv": (20, 20)}


def test_stats_chat_and_batch_take_the_budget(clip, tiny_onevision_dir, tmp_path):
    stats = invoke("stats", clip, "--model", tiny_onevision_dir, "--frames", "3", "--budget", 30, "--json")
    assert stats.exit_code == 0, stats.stderr
    record = json.loads(stats.stdout)
    assert (record["budget"], record["ratio"], record["tokens"]["visual_after"]) == (30, 1 - 30 / 192, 30)
    chat = invoke("chat", clip, "--model", tiny_onevision_dir, *FAST, "--budget", 9, "--json", input=f"{QUESTION}\n")
    assert chat.exit_code == 0, chat.stderr
    [answer] = json_lines(chat.stdout)
    assert (answer["budget"], answer["tokens"]["visual_after"]) == (9, 9)
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(f"- {{id: cli, video: {clip}, question: '{QUESTION}'}}\n"
                    f"- {{id: own, video: {clip}, question: '{QUESTION}', options: {{budget: 5}}}}\n"
                    f"- {{id: ratio, video: {clip}, question: '{QUESTION}', options: {{ratio: 0.5}}}}\n"
                    f"- {{id: over, video: {clip}, question: '{QUESTION}', options: {{budget: 129}}}}\n")
    batch = invoke("batch", jobs, "--model", tiny_onevision_dir, *FAST, "--budget", 12, "--out", tmp_path / "o.jsonl")
    out = {r["id"]: r for r in map(json.loads, (tmp_path / "o.jsonl").read_text().splitlines())}
    assert {key: (r["status"], r.get("budget"), r.get("tokens", {}).get("visual_after")) for key, r in out.items()
            } == {"cli": ("ok", 12, 12), "own": ("ok", 5, 5), "ratio": ("ok", None, 64), "over": ("error", None, None)}
    assert "the budget of 129 visual tokens exceeds the 128 there are in 2 frames" in out["over"]["error"]


@pytest.mark.parametrize(
    ("args", "lines"),
    [
        (["--budget", 10, "--ratio", 0.5],
         ["Error: give --ratio or --budget, not both", "Hint: see 'forestprune ask --help'"]),
        (["--budget", 0], ["Error: Invalid value for '--budget': Input should be greater than or equal to 1",
                           "Hint: see 'forestprune ask --help'"]),
        (["--method", "none", "--budget", 10],
         ["Error: method 'none' keeps every token; give no budget", "Hint: see 'forestprune ask --help'"]),
    ],
)
def test_usage_errors_exit_2_before_the_model_loads(clip, args, lines):
    result = invoke("ask", clip, QUESTION, "--model", "/nonexistent/model", *args)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == lines


@pytest.mark.parametrize(("family", "frames", "visual"), [("tiny_onevision_dir", 3, 192), ("tiny_qwen25_dir", 4, 108)])
def test_a_budget_over_the_tokens_is_exit_2_with_the_numbers_before_encoding(clip, request, family, frames, visual,
                                                                           monkeypatch):
    from fpcli.model.base import VideoLLM

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded")

    monkeypatch.setattr(VideoLLM, "encode_clip", no_encoding)
    for cls in VideoLLM.__subclasses__():
        monkeypatch.setattr(cls, "encode_clip", no_encoding)
    result = invoke("ask", clip, QUESTION, "--model", request.getfixturevalue(family), "--frames", frames,
                    "--budget", visual + 1, "--no-cache")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.splitlines()[-2:] == [
        f"Error: the budget of {visual + 1} visual tokens exceeds the {visual} there are in {frames} frames",
        "Hint: lower --budget or sample more --frames"]


def test_eval_budgets_over_a_frames_sweep_is_table_2(tiny_onevision_dir, tmp_path):
    from fixtures_eval import make_jsonl

    data = make_jsonl(tmp_path / "data")
    args = ["eval", "jsonl", "--data", data, "--out", tmp_path / "run", "--model", tiny_onevision_dir, "--limit", "1",
            "--max-new-tokens", "2", "--protocol", "lmms-eval", "--frames", "2,3", "--budgets", "40",
            "--methods", "none,forestprune,fastv", "--opt", "K=1", "--json"]
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    records = json_lines((tmp_path / "run" / "predictions.jsonl").read_text())
    seen = [(r["method"], r["frames"], r["budget"], r["ratio"], r["tokens"]["visual_before"],
             r["tokens"]["visual_in_llm"][-1]["visual"]) for r in records]
    assert seen == [("none", 2, None, 0.0, 128, 128),  # the reference once, at the first frame count
                    ("forestprune", 2, 40, 1 - 40 / 128, 128, 40), ("fastv", 2, 40, 1 - 40 / 128, 128, 40),
                    ("forestprune", 3, 40, 1 - 40 / 192, 192, 40), ("fastv", 3, 40, 1 - 40 / 192, 192, 40)]
    table = json.loads(result.stdout)["table1"]
    assert table["benches"] == ["jsonl@2", "jsonl@3"]  # one column per frame count
    assert table["titles"] == {"jsonl@2": "JSONL 2f", "jsonl@3": "JSONL 3f"}
    rows = [(row["method"], row["ratio"], row["budget"],
             [row["cells"][column]["accuracy"] is not None for column in table["benches"]]) for row in table["rows"]]
    assert rows == [("none", 0.0, None, [True, False]), ("forestprune", None, 40, [True, True]),
                    ("fastv", None, 40, [True, True])]
    again = invoke(*args)  # the same command resumes: nothing left to ask
    assert again.exit_code == 0 and "0 answered, 0 failed, 5 already done" in again.stderr


@pytest.mark.parametrize(("extra", "message"), [
    (["--budgets", "40", "--ratios", "0.5"], "Error: give --ratios or --budgets, not both"),
    (["--budgets", "0"], "Error: --budgets takes integers in >= 1, got '0'"),
    (["--budgets", "4x"], "Error: --budgets takes integers separated by commas, got '4x'"),
    (["--frames", "2,2"], "Error: frame counts are listed twice"),
    (["--frames", "2,2000"], "Error: --frames takes integers in 1..1024, got '2,2000'"),
    (["--budgets", "40,40"], "Error: budgets are listed twice"),
])
def test_eval_budget_and_frames_usage_errors_exit_2(tmp_path, extra, message):
    from fixtures_eval import make_jsonl

    data = make_jsonl(tmp_path / "data")
    result = invoke("eval", "jsonl", "--data", data, "--out", tmp_path / "run", "--model", "/nonexistent", *extra)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.splitlines()[0] == message
