"""ask, stats and batch end to end on the tiny Qwen2.5-VL and Qwen3-VL checkpoints: the layout detected from
config.json, Qwen-VL's sampling rule chosen by the model layer, --max-pixels, the JSON keys (frames sampled, the
merged grid, temporal_groups), the --viz picture at the resized frames' aspect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures_video import encode
from PIL import Image
from typer.testing import CliRunner

from fpcli.cli import app

runner = CliRunner()
QUESTION = "What is the man doing?"
ANSWER_KEYS = {
    "video", "question", "answer", "model", "layout", "method", "ratio", "budget", "frames", "grid", "tokens",
    "per_frame_kept", "timestamps", "timing_s", "peak_memory_mb", "prefill_tflops", "warnings", "temporal_groups",
    "cache", "method_options",
}  # fmt: skip
STATS_KEYS = {
    "video", "model", "layout", "method", "ratio", "budget", "frames", "grid", "tokens", "per_frame_kept", "timestamps",
    "timing_s", "peak_memory_mb", "forest", "compare", "warnings", "temporal_groups", "cache",
}  # fmt: skip


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """short.mp4: 1.2 s (2 fps gives 3 frames, so 4 uniform ones), long.mp4: 6 s (12 frames at 2 fps), 64x48."""
    root = tmp_path_factory.mktemp("qwen-clips")
    encode(root / "short.mp4", "libx264", 64, 48, 30)
    encode(root / "long.mp4", "libx264", 64, 48, 150)
    return root


def test_ask_json_keys_and_counts(clips: Path, tiny_qwen25_dir: Path):
    result = invoke("ask", clips / "long.mp4", QUESTION, "--model", tiny_qwen25_dir, "--frames", "5",
                    "--max-new-tokens", "3", "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert set(record) == ANSWER_KEYS and record["layout"] == "qwen2.5-vl"
    # 64x48 under the tiny checkpoint's 1024 pixels a frame: 36x24, a 9x6 merged grid; 5 frames are 3 groups
    assert (record["frames"], record["temporal_groups"], record["grid"]) == (5, 3, [6, 9])
    tokens = record["tokens"]
    assert (tokens["visual_before"], tokens["visual_after"], tokens["newline"]) == (162, 16, 0)
    assert tokens["prompt"] == tokens["text"] + 16 and len(record["per_frame_kept"]) == 3
    assert len(record["timestamps"]) == 5 and record["timing_s"]["load"] > 0
    assert "(qwen2.5-vl layout)" in result.stderr


def test_ask_samples_by_the_qwen_rule_and_max_pixels_reaches_the_model(clips: Path, tiny_qwen3_dir: Path):
    short = invoke("ask", clips / "short.mp4", QUESTION, "--model", tiny_qwen3_dir, "--max-new-tokens", "2",
                   "--json")
    assert short.exit_code == 0, short.stderr
    record = json.loads(short.stdout)
    assert (record["layout"], record["frames"], record["temporal_groups"]) == ("qwen3-vl", 4, 2)  # raised to 4
    assert record["timestamps"] == [0.0, 0.4, 0.76, 1.16]
    long = invoke("ask", clips / "long.mp4", QUESTION, "--model", tiny_qwen3_dir, "--max-new-tokens", "2",
                  "--max-pixels", "256", "--ratio", "0", "--method", "none", "--json")
    assert long.exit_code == 0, long.stderr
    record = json.loads(long.stdout)
    assert (record["frames"], record["temporal_groups"]) == (12, 6)  # 2 fps over 6 s
    assert record["grid"] == [3, 4] and record["tokens"]["visual_after"] == 6 * 12  # 12x16 px: at most 256
    slow = invoke("ask", clips / "long.mp4", QUESTION, "--model", tiny_qwen3_dir, "--max-new-tokens", "2",
                  "--fps", "1", "--json")
    assert json.loads(slow.stdout)["frames"] == 6


def test_max_pixels_is_checked(clips: Path, tiny_qwen25_dir: Path, tiny_onevision_dir: Path):
    over = invoke("ask", clips / "long.mp4", QUESTION, "--model", tiny_qwen25_dir, "--max-pixels", "99999999")
    assert over.exit_code == 2 and "--max-pixels" in over.stderr
    small = invoke("ask", clips / "long.mp4", QUESTION, "--model", tiny_qwen25_dir, "--max-pixels", "15")
    assert small.exit_code == 2  # a usage error the model finds, for this video: the command goes on to the next
    assert "Error: max_pixels 15 is below one merged token (4x4 = 16 pixels)" in small.stderr
    llava = invoke("ask", clips / "long.mp4", QUESTION, "--model", tiny_onevision_dir, "--max-pixels", "4096")
    assert llava.exit_code == 2 and "Loaded" not in llava.stderr  # refused before anything loads
    assert llava.stderr.splitlines() == [
        "Error: max_pixels applies to Qwen-VL models; the onevision layout resizes every frame to the vision "
        "tower's square input", "Hint: leave out --max-pixels"]


def test_stats_json_human_and_viz(clips: Path, tiny_qwen3_dir: Path, tmp_path: Path):
    picture = tmp_path / "viz.png"
    result = invoke("stats", clips / "long.mp4", "--model", tiny_qwen3_dir, "--frames", "5", "--ratio", "0.5",
                    "--compare", "uniform", "--json", "--viz", picture)
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert set(record) == STATS_KEYS and (record["frames"], record["temporal_groups"]) == (5, 3)
    assert record["tokens"]["newline"] == 0 and len(record["per_frame_kept"]) == 3
    assert record["compare"][0]["method"] == "uniform"
    with Image.open(picture) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[1] >= 4 * 48 and pixels.std() > 0
    human = invoke("stats", clips / "long.mp4", "--model", tiny_qwen3_dir, "--frames", "5", "--ratio", "0.5")
    assert human.exit_code == 0, human.stderr
    assert "5 frames in 3 groups" in human.stdout and "one cell per group" in human.stdout
    table = invoke("stats", clips / "long.mp4", "--model", tiny_qwen3_dir, "--frames", "5", "--frames-table")
    times = [line.split()[1] for line in table.stdout.splitlines() if line.strip()[:2] in ("0 ", "1 ", "2 ")]
    assert len(times) == 3 and times[1] != times[0]  # each group at its first frame's time


def test_batch_items_with_max_pixels(clips: Path, tiny_qwen25_dir: Path, tmp_path: Path):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(
        f"- {{id: plain, video: {clips / 'short.mp4'}, question: 'What is the man doing?'}}\n"
        f"- {{id: small, video: {clips / 'long.mp4'}, question: Describe., options: {{max_pixels: 256, frames: 2}}}}\n"
        f"- {{id: bad, video: {clips / 'long.mp4'}, question: Describe., options: {{max_pixels: 0}}}}\n"
    )
    out = tmp_path / "r.jsonl"
    result = invoke("batch", jobs, "--model", tiny_qwen25_dir, "--max-new-tokens", "2", "--out", out)
    assert result.exit_code == 1
    plain, small, bad = [json.loads(line) for line in out.read_text().splitlines()]
    assert (plain["status"], plain["frames"], plain["temporal_groups"]) == ("ok", 4, 2)
    assert (small["status"], small["frames"], small["temporal_groups"], small["grid"]) == ("ok", 2, 1, [3, 4])
    assert bad["status"] == "error" and bad["error"] == f"max_pixels must be in 1..{16384 * 28 * 28}, got 0"


def test_devtools_writes_qwen_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture):
    from fpcli.devtools.__main__ import main
    from fpcli.model import resolve_model

    assert main(["tiny-checkpoint", str(tmp_path / "q3"), "--layout", "qwen3-vl", "--seed", "1"]) == 0
    assert json.loads((tmp_path / "q3" / "config.json").read_text())["model_type"] == "qwen3_vl"
    assert resolve_model(tmp_path / "q3").layout == "qwen3-vl"  # detected, no forestprune.json needed
    assert not (tmp_path / "q3" / "forestprune.json").exists()
    assert main(["tiny-checkpoint", str(tmp_path / "bad"), "--layout", "qwen3-vl", "--shape", "qwen2.5-vl-3b"]) == 2
    assert capsys.readouterr().err == ("Error: a Qwen-VL checkpoint is qwen2.5-vl or qwen3-vl of shape tiny or "
                                       "tiny-deep, or qwen2.5-vl of shape qwen2.5-vl-3b or qwen2.5-vl-7b; got "
                                       "qwen3-vl of shape qwen2.5-vl-3b\n")
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("command", ["ask", "stats", "batch"])
def test_help_names_the_qwen_options(command: str):
    text = " ".join(runner.invoke(app, [command, "--help"], env={"COLUMNS": "300"}).stdout.split())
    assert f"most pixels per frame after resizing (default: the checkpoint's video budget, e.g. 200704 for 448x448; " \
           f"{16384 * 28 * 28} at most)" in text
    assert "qwen2.5-vl/qwen3-vl 2 fps, at least 4" in text and "<onevision|video|qwen2.5-vl|qwen3-vl>" in text
