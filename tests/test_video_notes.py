"""The video layer says when a clip is not what was asked for: a cut AVI (its header counts frames that are not
there), more frames asked for than the video has, a rate above the video's own; the CLI shows each on stderr and
in the JSON's `warnings`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures_video import encode, truncate
from typer.testing import CliRunner

from fpcli.cli import app
from fpcli.video import sample_frames
from fpcli.video.notes import rate_above_native, stated_seconds, too_few_frames


@pytest.fixture(scope="module")
def avi(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 10 s mpeg4 AVI (250 frames at 25 fps) and its first 30%."""
    root = tmp_path_factory.mktemp("notes")
    full = encode(root / "full.avi", "mpeg4", 64, 48, 250, options={"g": "25"})
    return full, truncate(full, root / "cut.avi", 0.3)


def test_a_cut_avi_warns_with_the_duration_its_header_states(avi):
    full, cut = avi
    assert sample_frames(full, 8).warnings == []
    clip = sample_frames(cut, 8)
    assert clip.timestamps[-1] < 4.0  # only the readable first part is sampled
    assert len(clip.warnings) == 1
    assert clip.warnings[0].endswith(" s of the 10.00 s the file's header states can be read (file cut short?); "
                                     "sampled from the readable part")


def test_more_frames_than_there_are_and_a_rate_above_the_native_one(avi):
    full, _ = avi
    assert sample_frames(full, 300).warnings == [
        "asked for 300 frames but only 250 distinct frames are there to sample; took each once"]
    assert sample_frames(full, 300, index_rule="floor").warnings == [
        "asked for 300 frames but only 250 distinct frames are there to sample; repeated some to make 300"]
    assert sample_frames(full, 250).warnings == []
    assert sample_frames(full, 300, fps=60, max_frames=300).warnings == [
        "sampling at 60 fps is above the video's 25 fps: took every frame (250) instead"]
    assert sample_frames(full, 300, fps=25, max_frames=300).warnings == []


def test_the_rules_alone():
    assert too_few_frames(np.array([0, 1, 2]), 3) == []
    assert rate_above_native(30.0, 0.0, 10) == []  # rate unknown: nothing to compare
    assert stated_seconds(9.0, 240, 8.0) == 30.0  # the AVI case: the header's frames at the average rate
    assert stated_seconds(30.0, 0, 8.0) == 30.0 and stated_seconds(None, 0, 0.0) is None


def test_the_cli_prints_them_and_records_them_in_json(avi, tiny_onevision_dir):
    full, _ = avi
    result = CliRunner().invoke(app, ["stats", str(full), "--model", str(tiny_onevision_dir), "--fps", "50",
                                      "--frames", "300", "--json"])
    assert result.exit_code == 0, result.stderr
    warning = "sampling at 50 fps is above the video's 25 fps: took every frame (250) instead"
    assert json.loads(result.stdout)["warnings"] == [warning]
    assert f"Warning: {warning} ({full})" in result.stderr.splitlines()
