"""The CLI with every method of the catalogue: `ask --compare` (table, JSON lines, exit codes), in-LLM methods in
ask and batch, stats refusing in-LLM methods."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_cli_run import ANSWER_KEYS, QUESTION, invoke, json_lines, write_clip

FAST = ["--frames", "3", "--max-new-tokens", "3"]
# The tiny LLM has 2 decoder layers, so FastV's K and STTM's layer are given as 1.
SMALL = ["--opt", "K=1", "--opt", "layer=1"]
ALL = "none,forestprune,fastv,visionzip,framefusion,sttm"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("methods") / "a.mp4")


def test_ask_compare_json_gives_one_object_per_method(clip: Path, tiny_onevision_dir: Path):
    result = invoke("ask", clip, QUESTION, "--model", tiny_onevision_dir, *FAST, *SMALL, "--compare", ALL, "--json")
    assert result.exit_code == 0, result.stderr
    records = json_lines(result.stdout)
    assert [r["method"] for r in records] == ALL.split(",")
    assert all(set(r) == ANSWER_KEYS for r in records)
    assert [r["ratio"] for r in records] == [0.0, 0.9, 0.9, 0.9, 0.9, 0.9]
    total = 3 * 8 * 8
    by_method = {r["method"]: r for r in records}
    assert by_method["none"]["tokens"]["visual_in_llm"] == [{"from_layer": 0, "visual": total}]
    assert by_method["forestprune"]["tokens"]["visual_in_llm"] == [{"from_layer": 0, "visual": 19}]  # 0.1 * 192
    assert by_method["fastv"]["tokens"]["visual_in_llm"] == [{"from_layer": 0, "visual": total},
                                                             {"from_layer": 1, "visual": 19}]
    assert by_method["fastv"]["tokens"]["prompt"] == by_method["none"]["tokens"]["prompt"]
    assert by_method["fastv"]["prefill_tflops"]["after"] < by_method["none"]["prefill_tflops"]["after"]
    assert records[0]["timing_s"]["encode"] > 0 and records[0]["timing_s"]["decode"] > 0
    assert all(r["timing_s"]["encode"] == r["timing_s"]["decode"] == 0 for r in records[1:])  # counted once
    assert records[0]["timing_s"]["load"] > 0 and all(r["timing_s"]["load"] == 0 for r in records[1:])


def test_ask_compare_table(clip: Path, tiny_onevision_dir: Path):
    result = invoke("ask", clip, QUESTION, "--model", tiny_onevision_dir, *FAST, "--opt", "K=1", "--compare",
                    "none,fastv,uniform", "-q")  # --method (forestprune) runs first, not being listed
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{clip} · 3 × 8×8 visual tokens · ratio 0.9 · one encoding"
    table = [line.split() for line in lines[1:] if line.startswith(" ") and line.strip()]  # indented by one
    assert table[0] == ["method", "visual", "prune", "ms", "encode", "s", "prefill", "s", "TFLOPs", "peak", "MB"]
    assert set(table[1][0]) == {"─"}
    rows = table[2:]
    assert [row[0] for row in rows] == ["forestprune", "none", "fastv", "uniform"]
    assert {len(row) for row in rows} == {7}
    assert [row[1] for row in rows] == ["19", "192", "192→19@L1", "19"]
    answers = [line.split()[0] for line in lines if line and not line.startswith(" ")][1:]  # after the title
    assert answers == ["forestprune", "none", "fastv", "uniform"]  # each answer on its own line after the table


@pytest.mark.parametrize(("args", "message"), [
    (["--compare", "none,tome"], "Error: unknown method 'tome'; available: none, uniform, random, gprune, divprune, "
                                 "dycoke, forestprune, visionzip, vidcom2, fastvid, holitom, flashvid, fastv, "
                                 "framefusion, sttm"),
    (["--compare", "fastv", "--opt", "K=0"], "Error: K must be an int in [1, 2**63), got 0"),
    (["--method", "framefusion", "--opt", "S_threshold=1.5"],
     "Error: S_threshold must be a number in [-1, 1], got 1.5"),
    (["--method", "sttm", "--opt", "depth=2"],
     "Error: unknown option 'depth' for method 'sttm'; accepted options: layer, tau_s, tau_t, root_level"),
])  # fmt: skip
def test_bad_methods_and_options_are_usage_errors_before_any_model(clip: Path, args, message):
    result = invoke("ask", clip, QUESTION, "--model", "/nonexistent/model", *args)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [message, "Hint: see 'forestprune ask --help'"]


def test_stats_refuses_in_llm_methods(clip: Path):
    result = invoke("stats", clip, "--model", "/nonexistent/model", "--compare", "uniform,sttm")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["Error: sttm prunes inside the LLM, which stats does not run",
                                          "Hint: compare it with `forestprune ask VIDEO QUESTION --compare sttm`"]


def test_in_llm_method_in_ask_and_batch(clip: Path, tiny_onevision_dir: Path, tmp_path: Path):
    asked = invoke("ask", clip, QUESTION, "--model", tiny_onevision_dir, *FAST, "--method", "fastv", "--opt", "K=1",
                   "--json")
    assert asked.exit_code == 0, asked.stderr
    [record] = json_lines(asked.stdout)
    assert record["method"] == "fastv" and record["tokens"]["visual_after"] == 19
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(f"- {{id: one, video: {clip}, question: '{QUESTION}', options: {{method: fastv, K: 1}}}}\n"
                    f"- {{id: two, video: {clip}, question: '{QUESTION}', options: {{method: sttm, layer: 1}}}}\n")
    batch = invoke("batch", jobs, "--model", tiny_onevision_dir, *FAST, "--out", tmp_path / "out.jsonl")
    assert batch.exit_code == 0, batch.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(r["id"], r["status"], r["method"]) for r in out] == [("one", "ok", "fastv"), ("two", "ok", "sttm")]
    assert out[0]["answer"] == record["answer"]  # the same answer as ask gives


def test_visual_column_shows_what_the_layers_ran_on():
    from fpcli.cli.render import _visual_in_llm

    def tokens(stages, entered):
        return {"visual_in_llm": [{"from_layer": layer, "visual": n} for layer, n in stages], "text": 30,
                "newline": 1, "prompt": 31 + entered}

    assert _visual_in_llm(tokens([(0, 51)], 51)) == "51"  # pruned before the LLM
    assert _visual_in_llm(tokens([(0, 512), (2, 51)], 512)) == "512→51@L2"  # FastV
    assert _visual_in_llm(tokens([(0, 130), (1, 51)], 512)) == "512→130@L0→51@L1"  # FrameFusion merges at layer 0


def test_qwen_checks_in_llm_layers_after_loading_and_compares_the_others(clip: Path, tiny_qwen25_dir: Path):
    asked = invoke("ask", clip, QUESTION, "--model", tiny_qwen25_dir, "--frames", "2", "--method", "fastv")
    assert asked.exit_code == 2  # a usage error the loaded model finds: the command ends before any encoding
    assert asked.stderr.splitlines()[-1] == "Error: option 'K' of fastv must be below the model's 2 decoder layers, got 2"
    assert not any(Path(os.environ["FORESTPRUNE_CACHE"]).rglob("*.safetensors"))  # nothing encoded (nor cached)
    compared = invoke("ask", clip, QUESTION, "--model", tiny_qwen25_dir, *FAST, "--compare", "none,uniform",
                      "--json")
    assert compared.exit_code == 0, compared.stderr
    assert [r["method"] for r in json_lines(compared.stdout)] == ["forestprune", "none", "uniform"]
