"""`--viz` on `ask` and `stats` with tiny random checkpoints: the files are written, with a strip per method (the
stage of an in-LLM method), forestprune's trees, the report's table; stdout stays the results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from fpcli.cli import app
from fpcli.viz.cells import CANVAS_WIDTH
from test_viz import parse

runner = CliRunner()
CLIP = Path(__file__).resolve().parents[1] / "sample_videos" / "hard_cuts.mp4"


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def test_stats_report_has_every_method_its_table_and_the_trees(tiny_onevision_dir: Path, tmp_path: Path):
    report = tmp_path / "out" / "stats.html"
    result = invoke("stats", CLIP, "--model", tiny_onevision_dir, "--frames", "4", "--compare", "visionzip,gprune",
                    "--viz", report, "--viz-trees", "2", "--json", "--no-cache")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)  # stdout: the result only
    assert f"Wrote {report}" in result.stderr
    page = parse(report.read_text(encoding="utf-8"))
    text = "".join(page.text)
    kept = record["tokens"]["visual_after"]
    for method in ("forestprune", "visionzip", "gprune"):
        assert f"{method}: {kept}/256 tokens kept, before the LLM" in text  # 4 frames of 8x8, ratio 0.9
    assert "forestprune: the 2 deepest trees" in text
    assert f"{record['forest']['trees']} ({record['forest']['roots_after']})" in text  # the table's forest column
    assert len(page.images) == 4  # three strips and the trees


def test_ask_compare_report_shows_the_in_llm_stage(tiny_onevision_dir: Path, tmp_path: Path):
    report = tmp_path / "ask.html"
    result = invoke("ask", CLIP, "What happens?", "--model", tiny_onevision_dir, "--frames", "4",
                    "--max-new-tokens", "2", "--compare", "visionzip,fastv", "--opt", "K=1", "--viz", report, "--json")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["method"] for r in records] == ["forestprune", "visionzip", "fastv"]
    page = parse(report.read_text(encoding="utf-8"))
    text = "".join(page.text)
    assert "visionzip: 26/256 tokens kept, before the LLM" in text
    assert "fastv: 26/256 tokens kept, at layer 1" in text
    assert "Question: What happens?" in text and all(r["answer"] in text for r in records)
    assert len(page.images) == 3


def test_ask_qwen_picture_has_one_strip(tiny_qwen3_dir: Path, tmp_path: Path):
    picture = tmp_path / "qwen.png"
    result = invoke("ask", CLIP, "What happens?", "--model", tiny_qwen3_dir, "--frames", "5", "--max-new-tokens",
                    "2", "--ratio", "0.5", "--viz", picture, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["temporal_groups"] == 3
    with Image.open(picture) as image:
        assert image.format == "PNG" and image.width == CANVAS_WIDTH
        assert np.asarray(image.convert("RGB")).std() > 0


def test_ask_viz_on_a_cache_hit_decodes_for_the_picture_and_answers_as_without(tiny_onevision_dir: Path,
                                                                                 tmp_path: Path):
    args = ("ask", CLIP, "What happens?", "--model", tiny_onevision_dir, "--frames", "4", "--max-new-tokens", "3",
            "--json")
    plain = invoke(*args)  # stores the clip's features
    picture = tmp_path / "hit.webp"
    drawn = invoke(*args, "--viz", picture)
    assert plain.exit_code == 0 and drawn.exit_code == 0, drawn.stderr
    first, second = json.loads(plain.stdout), json.loads(drawn.stdout)
    assert (first["cache"], second["cache"]) == ("miss", "hit")
    assert second["answer"] == first["answer"] and second["per_frame_kept"] == first["per_frame_kept"]
    with Image.open(picture) as image:
        assert image.format == "WEBP" and image.width == CANVAS_WIDTH
