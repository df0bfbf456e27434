"""Tables never cut a value: full width when stdout is not a terminal (a file, a log, a pipe), one block per row
(method) in a terminal too narrow for them."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fixtures_eval import make_jsonl
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text
from test_cli_run import QUESTION, write_clip
from typer.testing import CliRunner

from fpcli.cli import app
from fpcli.cli.tables import print_whole

NARROW = {"COLUMNS": "30"}  # what rich takes as the width of a console that is not a terminal


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args], env=NARROW)


def table() -> Table:
    view = Table(title="Accuracy")
    for name in ("Method", "Ratio", "VideoMME", "Avg."):
        view.add_column(name, no_wrap=True)
    view.add_row("forestprune", "0.9", "55.0 (98.2)", "55.0 (98.2)")
    view.add_row("none", "-", "56.0 (100.0)", "56.0 (100.0)")
    return view


def printed(console_options: dict, renderable) -> str:
    buffer = io.StringIO()
    print_whole(Console(file=buffer, color_system=None, **console_options), renderable)
    return buffer.getvalue()


def test_not_a_terminal_prints_at_full_width():
    text = printed({"width": 20, "force_terminal": False}, Group(Text("title"), table()))
    assert "…" not in text
    assert "│ forestprune │ 0.9   │ 55.0 (98.2)  │ 55.0 (98.2)  │" in text.splitlines()


def test_a_narrow_terminal_gets_one_block_per_row():
    assert printed({"width": 30, "force_terminal": True}, table()).splitlines() == [
        "Accuracy", "", "forestprune", "  Ratio     0.9", "  VideoMME  55.0 (98.2)", "  Avg.      55.0 (98.2)", "",
        "none", "  Ratio     -", "  VideoMME  56.0 (100.0)", "  Avg.      56.0 (100.0)"]
    wide = printed({"width": 120, "force_terminal": True}, table())
    assert "│ forestprune │ 0.9   │ 55.0 (98.2)  │ 55.0 (98.2)  │" in wide.splitlines()  # fits: a table


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("tables") / "a.mp4")


def test_ask_compare_is_never_cut_when_piped(clip, tiny_onevision_dir):
    result = invoke("ask", clip, QUESTION, "--model", tiny_onevision_dir, "--frames", "3", "--max-new-tokens", "2",
                    "--compare", "none,forestprune,framefusion", "-q")
    assert result.exit_code == 0, result.stderr
    assert "…" not in result.stdout
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith(" ") and line.strip()]
    assert rows[0] == ["method", "visual", "prune", "ms", "encode", "s", "prefill", "s", "TFLOPs", "peak", "MB"]
    assert [row[0] for row in rows[2:]] == ["none", "forestprune", "framefusion"]
    assert rows[4][1].startswith("192→") and rows[4][1].endswith("@L1")  # FrameFusion's stages, whole
    assert all(len(row) == 7 for row in rows[2:])


def test_eval_table1_and_stats_frames_table_are_never_cut(clip, tiny_onevision_dir, tmp_path):
    data = make_jsonl(tmp_path / "b")
    result = invoke("eval", "jsonl", "--data", data, "--out", tmp_path / "run", "--model", tiny_onevision_dir,
                    "--frames", "2", "--max-new-tokens", "2", "--methods", "none,forestprune", "--ratios", "0.5",
                    "--device", "cpu", "-q")
    assert result.exit_code == 0, result.stderr
    assert "…" not in result.stdout
    assert [line.split()[1] for line in result.stdout.splitlines() if line.startswith("│")] == ["none", "forestprune"]
    stats = invoke("stats", clip, "--model", tiny_onevision_dir, "--frames", "3", "--frames-table", "-q")
    assert stats.exit_code == 0, stats.stderr
    assert "…" not in stats.stdout
    rows = [line.split() for line in stats.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [row[:2] for row in rows[-3:]] == [["0", "00:00.00"], ["1", "00:00.50"], ["2", "00:00.88"]]
