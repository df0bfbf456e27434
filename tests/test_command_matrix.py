"""Every command x every kind of method x every model family, on tiny checkpoints: each cell answers, or is refused
with exit 2 and its message before the model loads.

Kinds: a selection before the LLM (forestprune), a merging method before the LLM that needs the vision tower's
attention (visionzip), a method inside the LLM (fastv; the tiny LLMs have 2 decoder layers, so its K is 1).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_eval import make_jsonl
from test_cli_cache import invoke
from test_cli_run import QUESTION, json_lines, write_clip

FAMILIES = {"onevision": "tiny_onevision_dir", "video": "tiny_video_dir", "qwen2.5-vl": "tiny_qwen25_dir",
            "qwen3-vl": "tiny_qwen3_dir"}
KINDS = {"forestprune": [], "visionzip": [], "fastv": ["--opt", "K=1"]}
FAST = ["--frames", "2", "--max-new-tokens", "2"]


def refusal(method: str, layout: str) -> str | None:
    """The error line of a method the family cannot run (None where it runs): the catalogue's rule, by hand."""
    if layout.startswith("qwen") and method == "visionzip":
        return (f"Error: visionzip needs the vision tower's vision attention, which the {layout} layout's encoder "
                "does not provide")
    return None


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("matrix") / "a.mp4")


@pytest.fixture(params=list(FAMILIES))
def family(request: pytest.FixtureRequest) -> tuple[str, Path]:
    return request.param, request.getfixturevalue(FAMILIES[request.param])


def assert_refused(result, message: str) -> None:
    assert result.exit_code == 2, result.stderr
    assert "Loaded" not in result.stderr  # before the model loads
    assert result.stderr.splitlines() == [message, "Hint: see `forestprune methods` for what each method needs"]


@pytest.mark.parametrize("method", list(KINDS))
def test_ask(clip: Path, family: tuple[str, Path], method: str):
    layout, model = family
    result = invoke("ask", clip, QUESTION, "--model", model, *FAST, "--method", method, *KINDS[method], "--json")
    if refusal(method, layout):
        assert_refused(result, refusal(method, layout))
        return
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["method"], record["layout"]) == (method, layout)
    visual = record["tokens"]["visual_before"]
    assert record["tokens"]["visual_in_llm"][-1]["visual"] == max(1, round(0.1 * visual))


@pytest.mark.parametrize("method", list(KINDS))
def test_chat(clip: Path, family: tuple[str, Path], method: str):
    layout, model = family
    result = invoke("chat", clip, "--model", model, *FAST, "--method", method, *KINDS[method], "--json",
                    input=f"{QUESTION}\n{QUESTION}\n")
    if refusal(method, layout):
        assert_refused(result, refusal(method, layout))
        return
    assert result.exit_code == 0, result.stderr
    first, second = json_lines(result.stdout)
    assert first["method"] == second["method"] == method
    assert first["answer"] == second["answer"]  # greedy: the same question, the same answer
    assert ("visual tokens enter the LLM, fastv keeps" if method == "fastv" else "visual tokens kept") in result.stderr


@pytest.mark.parametrize("method", ["forestprune", "visionzip"])
def test_stats(clip: Path, family: tuple[str, Path], method: str):
    layout, model = family
    result = invoke("stats", clip, "--model", model, "--frames", "2", "--method", method, "--json")
    if refusal(method, layout):
        assert_refused(result, refusal(method, layout))
        return
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["method"] == method


def test_stats_refuses_in_llm_methods_before_loading(clip: Path, family: tuple[str, Path]):
    _, model = family
    result = invoke("stats", clip, "--model", model, "--method", "fastv")
    assert result.exit_code == 2 and "Loaded" not in result.stderr
    assert result.stderr.startswith("Error: fastv prunes inside the LLM, which stats does not run")


def test_batch(clip: Path, family: tuple[str, Path], tmp_path: Path):
    """One jobs file with an item per kind: refused items are recorded with the message, the others answered."""
    layout, model = family
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": m, "video": str(clip), "question": QUESTION,
                                        "options": {"method": m, **({"K": 1} if m == "fastv" else {})}}) + "\n"
                            for m in KINDS))
    result = invoke("batch", jobs, "--model", model, *FAST, "--out", tmp_path / "out.jsonl")
    records = {r["id"]: r for r in json_lines((tmp_path / "out.jsonl").read_text())}
    for method in KINDS:
        message = refusal(method, layout)
        if message:
            assert records[method]["status"] == "error"
            assert records[method]["error"] == message.removeprefix("Error: ")
        else:
            assert records[method]["status"] == "ok" and records[method]["method"] == method
    assert result.exit_code == (1 if layout.startswith("qwen") else 0), result.stderr


def test_eval(family: tuple[str, Path], tmp_path: Path):
    layout, model = family
    data = make_jsonl(tmp_path / "data")
    common = ["eval", "jsonl", "--data", data, "--model", model, *FAST, "--protocol", "lmms-eval", "--ratios", "0.5",
              "--limit", "1", "--device", "cpu", "--json"]
    runnable = [m for m in KINDS if not refusal(m, layout)]
    result = invoke(*common, "--out", tmp_path / "run", "--methods", ",".join(runnable), "--opt", "K=1")
    assert result.exit_code == 0, result.stderr
    predictions = json_lines((tmp_path / "run" / "predictions.jsonl").read_text())
    assert sorted(p["method"] for p in predictions) == sorted(runnable)
    assert all(p["status"] == "ok" for p in predictions)
    for method in KINDS:
        if refusal(method, layout):
            refused = invoke(*common, "--out", tmp_path / f"run-{method}", "--methods", method)
            assert_refused(refused, refusal(method, layout))


@pytest.mark.parametrize("method", ["fastv", "framefusion", "sttm"])
def test_chat_answers_with_every_in_llm_method(clip: Path, tiny_onevision_dir: Path, method: str):
    """chat's ready line reads the session's interface (an in-LLM session prunes nothing before the LLM)."""
    small = {"fastv": ["--opt", "K=1"], "sttm": ["--opt", "layer=1"], "framefusion": []}[method]
    result = invoke("chat", clip, "--model", tiny_onevision_dir, *FAST, "--method", method, *small, "--json",
                    input=f"{QUESTION}\n")
    assert result.exit_code == 0, result.stderr
    [record] = json_lines(result.stdout)
    assert record["method"] == method and record["tokens"]["visual_in_llm"][0]["from_layer"] == 0
    assert "all 128 visual tokens enter the LLM, " + method + " keeps 13 inside it" in result.stderr  # 2 x 8x8
