"""Small gaps users hit: cache list / cache rm, the cache cap on a hit, eval --plot (where it wrote, its title, a
round y axis), the Qwen-VL chat's Ready line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fixtures_eval import make_jsonl
from test_cli_run import write_clip
from test_eval_scoring import _table
from typer.testing import CliRunner

from fpcli.cli import app
from fpcli.eval.plot import axis, plot_title

FAST = ["--frames", "2", "--max-new-tokens", "2"]


def invoke(*args: object, input: str | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def features_dir() -> Path:
    return Path(os.environ["FORESTPRUNE_CACHE"]) / "features"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gaps")
    write_clip(root / "a.mp4")
    write_clip(root / "b.mp4", frames=5)
    return root


def test_cache_list_and_rm(clips, tiny_onevision_dir):
    for name, frames in (("a.mp4", "2"), ("b.mp4", "3")):
        assert invoke("ask", clips / name, "Q?", "--model", tiny_onevision_dir, "--frames", frames,
                      "--max-new-tokens", "2", "-q").exit_code == 0
    listed = [json.loads(line) for line in invoke("cache", "list", "--json").stdout.splitlines()]
    assert [(e["video"], e["frames"], e["model"]) for e in listed] == [
        (str(clips / "b.mp4"), 3, str(tiny_onevision_dir)), (str(clips / "a.mp4"), 2, str(tiny_onevision_dir))]
    assert all(e["bytes"] == Path(e["path"]).stat().st_size for e in listed)
    table = invoke("cache", "list").stdout.splitlines()
    assert [line.split()[4:7] for line in table] == [
        ["3", "frames", str(clips / "b.mp4")], ["2", "frames", str(clips / "a.mp4")]]
    removed = invoke("cache", "rm", "a.*")
    assert removed.exit_code == 0
    assert removed.stdout.startswith("Removed 1 entry (")
    assert removed.stdout.rstrip().endswith(f"matching 'a.*' from {features_dir()}")
    assert [json.loads(line)["video"] for line in invoke("cache", "list", "--json").stdout.splitlines()] == [
        str(clips / "b.mp4")]
    assert invoke("cache", "rm", "nothing*").stdout.startswith("Removed 0 entries (0 B)")


def test_cache_max_size_is_enforced_on_a_hit(clips, tiny_onevision_dir):
    for name in ("a.mp4", "b.mp4"):
        assert invoke("ask", clips / name, "Q?", "--model", tiny_onevision_dir, *FAST, "-q").exit_code == 0
    sizes = sorted(p.stat().st_size for p in features_dir().iterdir())
    assert len(sizes) == 2
    hit = invoke("ask", clips / "b.mp4", "Q?", "--model", tiny_onevision_dir, *FAST, "--json",
                 "--cache-max-size", f"{sizes[-1]}B")  # room for one: the entry just used stays
    assert hit.exit_code == 0 and json.loads(hit.stdout)["cache"] == "hit"
    listed = [json.loads(line)["video"] for line in invoke("cache", "list", "--json").stdout.splitlines()]
    assert listed == [str(clips / "b.mp4")]


def test_plot_axis_title_and_where_it_wrote(tiny_onevision_dir, tmp_path):
    assert axis(52.3, 58.1) == (52.0, 60.0, 2.0)
    assert axis(0.0, 100.0) == (0.0, 100.0, 25.0)
    assert axis(50.0, 50.0) == (47.5, 52.5, 2.5)
    assert plot_title(_table(), model="llava-ov-0.5b") == "VideoMME + MLVU (average) accuracy % · llava-ov-0.5b"
    assert plot_title(_table(), "mlvu") == "MLVU accuracy %"
    data = make_jsonl(tmp_path / "b")
    result = invoke("eval", "jsonl", "--data", data, "--out", tmp_path / "run", "--model", tiny_onevision_dir, *FAST,
                    "--methods", "none,uniform", "--ratios", "0.5", "--device", "cpu", "--plot", tmp_path / "acc.png")
    assert result.exit_code == 0, result.stderr
    assert f"Wrote the plot of accuracy against ratio to {tmp_path / 'acc.png'}" in result.stderr.splitlines()


def test_qwen_chat_ready_line_says_frames_and_groups(clips, tiny_qwen25_dir):
    result = invoke("chat", clips / "a.mp4", "--model", tiny_qwen25_dir, "--frames", "4", "--max-new-tokens", "2",
                    "--json", input="What?\n")
    assert result.exit_code == 0, result.stderr
    [ready] = [line for line in result.stderr.splitlines() if line.startswith("Ready:")]
    assert ready.startswith(f"Ready: {clips / 'a.mp4'}, 4 frames in 2 groups (encoded in ")
    record = json.loads(result.stdout)
    assert record["temporal_groups"] == 2 and record["frames"] == 4


def test_chat_ready_line_for_an_in_llm_method(clips, tiny_onevision_dir):
    result = invoke("chat", clips / "a.mp4", "--model", tiny_onevision_dir, *FAST, "--method", "fastv", "--opt",
                    "K=1", input="What?\n")
    assert result.exit_code == 0, result.stderr
    [ready] = [line for line in result.stderr.splitlines() if line.startswith("Ready:")]
    assert ready.endswith("), all 128 visual tokens enter the LLM, fastv keeps 13 inside it. Ask away; /exit or "
                          "Ctrl-D ends.")
