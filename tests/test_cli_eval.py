"""`forestprune eval` end to end on a tiny checkpoint: Table 1 and --json, missing videos (exit 1), resume,
--merge, --plot, and every bad usage as one `Error:` line with exit code 2 before any model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_eval import make_jsonl, make_videomme
from typer.testing import CliRunner

from fpcli.cli import app
from fpcli.eval import EvalInputError, EvalRequest, prepare_eval

runner = CliRunner()
FAST = ["--frames", "2", "--max-new-tokens", "3", "--methods", "none,uniform", "--ratios", "0.5", "--device", "cpu"]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def test_eval_prints_table1_and_counts(tiny_onevision_dir: Path, tmp_path: Path):
    data = make_jsonl(tmp_path / "b")
    result = invoke("eval", "jsonl", "--data", data, "--out", tmp_path / "run", "--model", tiny_onevision_dir, *FAST,
                    "--plot", tmp_path / "acc.png")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Method" in lines[2] and "JSONL" in lines[2] and "Avg." in lines[2]
    assert [line.split()[1] for line in lines if line.startswith("│")] == ["none", "uniform"]
    assert lines[-1] == "videos encoded 2, prefills 4, questions 4, failed 0, missing videos 0"
    assert "Eval: 4 answered, 0 failed, 0 already done" in result.stderr
    assert (tmp_path / "acc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [(g["method"], g["ratio"], g["n"]) for g in summary["groups"]] == [("none", 0.0, 2), ("uniform", 0.5, 2)]


def test_missing_videos_are_counted_exit_1_and_retried(tiny_onevision_dir: Path, tmp_path: Path):
    data = make_videomme(tmp_path / "mme")  # 2 questions on a present video, 1 on an absent one
    args = ["eval", "videomme", "--data", data, "--out", tmp_path / "run", "--model", tiny_onevision_dir, *FAST,
            "--json"]
    first = invoke(*args)
    assert first.exit_code == 1, first.stderr
    summary = json.loads(first.stdout)
    assert summary["missing_videos"] == [str(tmp_path / "mme" / "data" / "absent01.mp4")]
    assert (summary["videos_encoded"], summary["prefills"], summary["questions"], summary["failed"]) == (1, 2, 4, 2)
    assert f"Missing video: {tmp_path / 'mme' / 'data' / 'absent01.mp4'}" in first.stderr
    again = invoke(*args)
    assert again.exit_code == 1
    assert "Resuming" in again.stderr and "Eval: 0 answered, 2 failed, 4 already done" in again.stderr
    assert "Loaded" not in again.stderr  # only missing videos were left: no model load
    assert json.loads(again.stdout)["questions"] == 4


def test_merge_combines_shards(tiny_onevision_dir: Path, tmp_path: Path):
    data = make_jsonl(tmp_path / "b")
    for index in (1, 2):
        result = invoke("eval", "jsonl", "--data", data, "--out", tmp_path / f"s{index}", "--shard", f"{index}/2",
                        "--model", tiny_onevision_dir, *FAST)
        assert result.exit_code == 0, result.stderr
    merged = invoke("eval", "--merge", tmp_path / "s1", tmp_path / "s2", "--out", tmp_path / "all", "--json")
    assert merged.exit_code == 0, merged.stderr
    summary = json.loads(merged.stdout)
    assert (summary["videos_encoded"], summary["questions"]) == (2, 4)
    assert summary == json.loads((tmp_path / "all" / "summary.json").read_text())


@pytest.mark.parametrize("extra, message", [
    (["--bench", "nope"], None),  # an unknown option: click's own message
    (["--methods", ""], "give at least one method"),
    (["--methods", "none,teleport"], "unknown method 'teleport'"),
    (["--ratios", "0.5,abc"], "--ratios takes numbers separated by commas, got '0.5,abc'"),
    (["--ratios", "1.5"], "ratios must be numbers in [0, 1), got 1.5"),
    (["--ratios", "0.5,0.5"], "ratios are listed twice"),
    (["--shard", "3/2"], "shard must be I/N with 1 <= I <= N (e.g. 1/4), got '3/2'"),
    (["--protocol", "mine"], "Invalid value for '--protocol'"),
    (["--frames", "0"], "--frames takes integers in 1..1024, got '0'"),
    (["--plot", "acc.jpg"], "acc.jpg must end in .png"),
])
def test_bad_options_exit_2(tmp_path: Path, extra: list[str], message: str | None):
    data = make_jsonl(tmp_path / "b")
    result = invoke("eval", "jsonl", "--data", data, "--out", tmp_path / "run", "--model", "/nonexistent", *extra)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("Error: ")
    if message is not None:
        assert message in result.stderr.splitlines()[0]
    assert not (tmp_path / "run").exists()  # nothing was started


def test_bad_usage_exit_2_with_its_message(tmp_path: Path):
    data = make_jsonl(tmp_path / "b")
    (tmp_path / "file").write_text("x")
    cases = [
        (["eval", "imagenet", "--data", data, "--out", tmp_path / "r"],
         "Error: unknown benchmark 'imagenet'; choose one of videomme, mlvu, longvideobench, mvbench, nextqa, jsonl"),
        (["eval", "videomme", "--data", tmp_path, "--out", tmp_path / "r"],
         "Error: videomme: expected videomme/test-*.parquet or **/test-*.parquet in the data folder"),
        (["eval", "jsonl", "--out", tmp_path / "r"], "Error: --data DIR is required"),
        (["eval", "jsonl", "--data", data], "Error: --out RUN_DIR is required"),
        (["eval", "jsonl", "mlvu", "--data", data, "--out", tmp_path / "r"], "Error: give one BENCH, got 2 arguments"),
        (["eval", "--merge"], "Error: Missing argument 'BENCH | RUN_DIR...'."),
        (["eval", "--merge", tmp_path / "b", "--data", data], "Error: --merge takes RUN_DIR... (and --out, --json, "
         "--plot), not --data"),
        (["eval", "--merge", tmp_path / "b"], f"Error: is not a run directory (no run.json) ({tmp_path / 'b'})"),
        (["eval", "jsonl", "--data", data, "--out", tmp_path / "file"], "Error: Invalid value for '--out' / '-o'"),
        (["eval", "jsonl", "--data", data, "--out", tmp_path / "r", "--limit", "0"],
         "Error: Invalid value for '--limit'"),
    ]
    for args, message in cases:
        result = invoke(*args, "--model", "/nonexistent")
        assert result.exit_code == 2, (args, result.stderr)
        assert result.stderr.startswith(message), (args, result.stderr)


def test_prepare_checks_the_request_before_any_model(tmp_path: Path):
    data = make_jsonl(tmp_path / "b")
    (tmp_path / "file").write_text("x")
    with pytest.raises(EvalInputError, match=r"^--out must be a run directory, not a file \("):
        prepare_eval(EvalRequest("jsonl", data, tmp_path / "file"))
    with pytest.raises(EvalInputError, match="^no questions to evaluate in shard 3/3"):
        prepare_eval(EvalRequest("jsonl", data, tmp_path / "r", shard="3/3"))  # 2 videos: shard 3 is empty
    with pytest.raises(EvalInputError, match="^frames must be an integer >= 1, got 0"):
        prepare_eval(EvalRequest("jsonl", data, tmp_path / "r", frames=0))
    with pytest.raises(EvalInputError, match="^max_new_tokens must be an integer >= 1, got 0"):
        prepare_eval(EvalRequest("jsonl", data, tmp_path / "r", max_new_tokens=0))
    assert not (tmp_path / "r").exists()


def test_a_run_directory_of_another_run_is_refused(tiny_onevision_dir: Path, tmp_path: Path):
    data = make_jsonl(tmp_path / "b")
    first = invoke("eval", "jsonl", "--data", data, "--out", tmp_path / "run", "--model", tiny_onevision_dir, *FAST,
                   "--limit", "1")
    assert first.exit_code == 0, first.stderr
    other = invoke("eval", "jsonl", "--data", data, "--out", tmp_path / "run", "--model", tiny_onevision_dir, *FAST,
                   "--protocol", "lmms-eval")
    assert other.exit_code == 2
    assert other.stderr.startswith(f"Error: the run in {tmp_path / 'run'} was made with protocol \"paper\", this "
                                   "run has protocol \"lmms-eval\" (and ")
    sharded = invoke("eval", "jsonl", "--data", data, "--out", tmp_path / "run", "--model", tiny_onevision_dir, *FAST,
                     "--shard", "1/2")  # the shard is not a setting of the predictions: the run directory says so
    assert sharded.exit_code == 2
    assert sharded.stderr.startswith(f"Error: holds another run (jsonl, paper, {tiny_onevision_dir}, shard None); "
                                     f"give a new --out to start this one ({tmp_path / 'run'})")


def test_clip_warnings_are_in_the_records_and_shown_once_per_video(tiny_video_dir: Path, tmp_path: Path):
    data = make_jsonl(tmp_path / "b")  # lmms-eval's llava_vid: 1 fps capped at --frames, more than 2 s of video
    result = invoke("eval", "jsonl", "--data", data, "--out", tmp_path / "run", "--model", tiny_video_dir, *FAST,
                    "--protocol", "lmms-eval")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 4
    for record in records:
        (warning,) = record["warnings"]
        assert warning.startswith("sampling at 1 fps gives ") and "more than the cap of 2: took 2 frames" in warning
    shown = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
    assert shown == [f"Warning: {r['warnings'][0]} ({r['video']})" for r in records if r["method"] == "none"]


def test_qwen_layouts_sample_by_their_rule_where_the_protocol_allows(tiny_qwen25_dir: Path, tmp_path: Path):
    from fpcli.eval import get_protocol

    mine = get_protocol("paper").for_bench("jsonl")
    assert mine.sampling("qwen2.5-vl", default_frames=768) == {
        "num_frames": 768, "fps": 2.0, "max_frames": 768, "index_rule": "floor"}
    assert mine.sampling("qwen3-vl", frames=8, default_frames=768) == {"num_frames": 8, "index_rule": "floor"}
    jsonl = invoke("eval", "jsonl", "--data", make_jsonl(tmp_path / "b"), "--out", tmp_path / "run",
                   "--model", tiny_qwen25_dir, "--max-new-tokens", "2", "--methods", "none", "--device", "cpu")
    assert jsonl.exit_code == 0, jsonl.stderr
    assert json.loads((tmp_path / "run" / "run.json").read_text())["layout"] == "qwen2.5-vl"
    mme = invoke("eval", "videomme", "--data", make_videomme(tmp_path / "mme"), "--out", tmp_path / "mme-run",
                 "--model", tiny_qwen25_dir, *FAST)
    assert mme.exit_code == 2
    assert mme.stderr.splitlines()[0] == (
        "Error: protocol 'paper' has no videomme settings for the qwen2.5-vl layout (it fixes frames for "
        "onevision, video only); use --protocol lmms-eval")
    assert "Loaded" not in mme.stderr


def test_a_second_run_reads_the_features_from_the_cache(tiny_onevision_dir: Path, tmp_path: Path):
    """Another run directory over the same videos: no vision tower (feature cache hits), the same predictions."""
    data = make_jsonl(tmp_path / "b")
    runs = [invoke("eval", "jsonl", "--data", data, "--out", tmp_path / name, "--model", tiny_onevision_dir, *FAST,
                   "--json", *extra)
            for name, extra in (("cold", []), ("warm", []), ("off", ["--no-cache"]))]
    assert [r.exit_code for r in runs] == [0, 0, 0], runs[-1].stderr
    assert [json.loads(r.stdout)["videos_encoded"] for r in runs] == [2, 0, 2]

    def predictions(name: str) -> list[tuple]:
        lines = (tmp_path / name / "predictions.jsonl").read_text().splitlines()
        return sorted((r["id"], r["method"], r["response"]) for r in map(json.loads, lines))

    assert predictions("warm") == predictions("cold") == predictions("off")
