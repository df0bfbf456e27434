"""ask and stats end to end: tiny random checkpoints on disk, real decoding, real pruning, real generation.

Answers of a random tiny model are noise; what is checked is the contract around them: the JSON
schema, counts that must agree, stdout/stderr separation, several videos, config precedence.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fpcli.cli import app

runner = CliRunner()
QUESTION = "What is the man doing?"
FAST = ["--frames", "3", "--max-new-tokens", "3"]

ANSWER_KEYS = {
    "video", "question", "answer", "model", "layout", "method", "ratio", "budget", "frames", "grid", "tokens",
    "per_frame_kept", "timestamps", "timing_s", "peak_memory_mb", "prefill_tflops", "warnings", "cache",
    "method_options",
}
TOKEN_KEYS = {"visual_before", "visual_after", "newline", "text", "prompt", "generated", "visual_in_llm"}
TIMING_KEYS = {"startup", "load", "decode", "encode", "cache_load", "prune", "prefill", "generate", "total"}
STATS_KEYS = {
    "video", "model", "layout", "method", "ratio", "budget", "frames", "grid", "tokens", "per_frame_kept", "timestamps",
    "timing_s", "peak_memory_mb", "forest", "compare", "warnings", "cache",
}
FOREST_KEYS = {"nodes", "trees", "roots_before", "roots_after", "depth_histogram"}


def write_clip(path: Path, frames: int = 8, size: tuple[int, int] = (64, 48), fps: int = 8) -> Path:
    """A small MPEG-4 clip of a moving gradient (different content per frame, so pruning has work to do)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            rgb = np.stack([(x * 4 + i * 16) % 256, (y * 4) % 256, np.full_like(x, i * 30 % 256)], -1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """a.mp4, long.mp4 (70 frames), and folder/ with b.mp4, c.mkv and a non-video file."""
    root = tmp_path_factory.mktemp("videos")
    write_clip(root / "a.mp4")
    write_clip(root / "long.mp4", frames=70, size=(32, 32))
    write_clip(root / "folder" / "b.mp4", frames=6)
    write_clip(root / "folder" / "c.mkv", frames=5)
    (root / "folder" / "notes.txt").write_text("not a video")
    (root / "broken.mp4").write_bytes(b"\x00" * 256)
    return root


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def assert_rounded(record: dict) -> None:
    """Seconds to 0.1 ms (the total is the sum of the rounded stages), memory to 0.1 MB, TFLOPs to 6 digits."""
    timing = record["timing_s"]
    assert all(value == round(value, 4) for value in timing.values())
    assert timing["total"] == round(sum(v for k, v in timing.items() if k != "total"), 4)
    assert record["peak_memory_mb"] == round(record["peak_memory_mb"], 1) > 0
    for tflops in record.get("prefill_tflops", {}).values():
        assert tflops == float(f"{tflops:.6g}") > 0


@pytest.fixture
def load_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """The calls of fpcli.model.load_model (still loading), as (spec, vision_only)."""
    import fpcli.model

    calls: list[tuple] = []
    real = fpcli.model.load_model

    def spy(spec, **kwargs):
        calls.append((spec, kwargs["vision_only"]))
        return real(spec, **kwargs)

    monkeypatch.setattr(fpcli.model, "load_model", spy, raising=False)
    return calls


def test_ask_json_schema(videos: Path, tiny_onevision_dir: Path):
    result = invoke("ask", videos / "a.mp4", QUESTION, "--model", tiny_onevision_dir, *FAST, "--json")
    assert result.exit_code == 0, result.stderr
    [record] = json_lines(result.stdout)
    assert set(record) == ANSWER_KEYS
    assert set(record["tokens"]) == TOKEN_KEYS
    assert set(record["timing_s"]) == TIMING_KEYS
    assert set(record["prefill_tflops"]) == {"before", "after"}
    assert record["video"] == str(videos / "a.mp4")
    assert record["question"] == QUESTION
    assert (record["method"], record["ratio"], record["frames"]) == ("forestprune", 0.9, 3)
    assert record["layout"] == "onevision"
    height, width = record["grid"]
    tokens = record["tokens"]
    assert tokens["visual_before"] == 3 * height * width
    assert tokens["visual_after"] == sum(record["per_frame_kept"]) == round(0.1 * tokens["visual_before"])
    assert tokens["newline"] == 1
    assert tokens["prompt"] == tokens["text"] + tokens["visual_after"] + tokens["newline"]
    assert 1 <= tokens["generated"] <= 3
    assert len(record["per_frame_kept"]) == len(record["timestamps"]) == 3
    assert record["timing_s"]["total"] == pytest.approx(sum(v for k, v in record["timing_s"].items() if k != "total"))
    assert re.fullmatch(rf"Loaded {re.escape(str(tiny_onevision_dir))} \(onevision layout\) on cpu, float32, "
                        r"in \d+\.\d s\.\n", result.stderr)
    assert_rounded(record)


def test_ask_human_output(videos: Path, tiny_onevision_dir: Path):
    result = invoke("ask", videos / "a.mp4", QUESTION, "--model", tiny_onevision_dir, *FAST, "--ratio", "0.5")
    assert result.exit_code == 0, result.stderr
    labels = ["visual tokens", "other tokens", "frames", "time", "memory", "model"]
    assert [line.split("  ")[0] for line in result.stdout.splitlines() if line.split("  ")[0] in labels] == labels
    assert "(50.0% kept) · forestprune, ratio 0.5" in result.stdout
    [time_line] = [line for line in result.stdout.splitlines() if line.startswith("time ")]
    assert re.fullmatch(r"time +startup [\d.]+ · load [\d.]+ · decode [\d.]+ · encode [\d.]+ · prune [\d.]+ · "
                        r"prefill [\d.]+ · generate [\d.]+ · total [\d.]+ s", time_line)
    quiet = invoke("ask", videos / "a.mp4", QUESTION, "--model", tiny_onevision_dir, *FAST, "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_ask_several_videos_and_a_folder(videos: Path, tiny_onevision_dir: Path):
    result = invoke("ask", videos / "a.mp4", videos / "folder", QUESTION, "--model", tiny_onevision_dir, *FAST,
                    "--json")
    assert result.exit_code == 0, result.stderr
    records = json_lines(result.stdout)
    assert [r["video"] for r in records] == [str(videos / "a.mp4"), str(videos / "folder" / "b.mp4"),
                                             str(videos / "folder" / "c.mkv")]
    assert all(r["question"] == QUESTION for r in records)


def test_several_videos_are_headed_by_their_paths(videos: Path, tiny_onevision_dir: Path, tmp_path: Path):
    """Each result is under a rule naming its video; a path is printed as is, not read as Rich markup."""
    bracketed = write_clip(tmp_path / "take[b].mp4", frames=4)
    result = invoke("stats", videos / "a.mp4", bracketed, "--model", tiny_onevision_dir, "--frames", "2")
    assert result.exit_code == 0, result.stderr
    rules = [line.split(" ─")[0] for line in result.stdout.splitlines() if line.endswith("──")]
    assert rules == [str(videos / "a.mp4"), str(bracketed)]


def test_ask_goes_on_after_a_bad_video(videos: Path, tiny_onevision_dir: Path):
    result = invoke("ask", videos / "broken.mp4", videos / "a.mp4", QUESTION, "--model", tiny_onevision_dir, *FAST,
                    "--json")
    assert result.exit_code == 1
    assert [r["video"] for r in json_lines(result.stdout)] == [str(videos / "a.mp4")]
    lines = [line for line in result.stderr.splitlines() if not line.startswith("Loaded ")]
    assert lines[0].startswith(f"failed [1/2] {videos / 'broken.mp4'}: ")
    assert lines[0].endswith(f"({videos / 'broken.mp4'})")
    assert re.fullmatch(rf"ok     \[2/2\] {re.escape(str(videos / 'a.mp4'))} \(\d+\.\d s\)", lines[1])
    assert re.fullmatch(r"Done: 1 ok, 1 failed \(2 videos\) in \d+\.\d s", lines[2])
    assert len(lines) == 3


@pytest.mark.parametrize("command", ["ask", "stats"])
def test_bad_video_fails_before_the_model_loads(videos: Path, tiny_onevision_dir: Path, load_calls: list[tuple],
                                                command: str):
    args = [videos / "broken.mp4", *(["What?"] if command == "ask" else []), "--model", tiny_onevision_dir]
    result = invoke(command, *args)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("Error: ")
    assert result.stderr.splitlines()[-1].endswith(f"({videos / 'broken.mp4'})")
    assert load_calls == [] and "Loaded" not in result.stderr and result.stdout == ""


def test_default_frames_come_from_the_checkpoint_resolved_once(videos: Path, tiny_video_dir: Path,
                                                               load_calls: list[tuple],
                                                               monkeypatch: pytest.MonkeyPatch):
    """No --frames: the layout in forestprune.json gives 64 frames; the spec is resolved once, before decoding."""
    import fpcli.model
    import fpcli.model.loading

    resolved = []
    real = fpcli.model.resolve_model

    def spy(*args, **kwargs):
        resolved.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(fpcli.model, "resolve_model", spy)
    monkeypatch.setattr(fpcli.model.loading, "resolve_model", spy)
    result = invoke("stats", videos / "long.mp4", "--model", tiny_video_dir, "--json")
    assert result.exit_code == 0, result.stderr
    [record] = json_lines(result.stdout)
    assert (record["layout"], record["frames"]) == ("video", 64)
    assert resolved == [str(tiny_video_dir)]
    [(spec, vision_only)] = load_calls
    assert isinstance(spec, fpcli.model.ResolvedModel) and spec.path == tiny_video_dir.resolve() and vision_only


def test_method_none_keeps_every_token(videos: Path, tiny_onevision_dir: Path):
    result = invoke("ask", videos / "a.mp4", QUESTION, "--model", tiny_onevision_dir, *FAST, "--method", "none",
                    "--json")
    assert result.exit_code == 0, result.stderr
    [record] = json_lines(result.stdout)
    assert (record["method"], record["ratio"]) == ("none", 0.0)
    assert record["tokens"]["visual_after"] == record["tokens"]["visual_before"]


def test_ask_video_layout(videos: Path, tiny_video_dir: Path):
    result = invoke("ask", videos / "a.mp4", QUESTION, "--model", tiny_video_dir, *FAST, "--json")
    assert result.exit_code == 0, result.stderr
    [record] = json_lines(result.stdout)
    assert record["layout"] == "video"
    assert record["tokens"]["newline"] == 3 * record["grid"][0]  # a newline after every row of every frame


def test_config_precedence(videos: Path, tiny_onevision_dir: Path, tmp_path: Path):
    config = tmp_path / "forestprune.yaml"
    config.write_text(f"model: {tiny_onevision_dir}\nratio: 0.5\nmethod: uniform\nframes: 2\nmax-new-tokens: 2\n")
    from_config = invoke("ask", videos / "a.mp4", QUESTION, "--config", config, "--json")
    assert from_config.exit_code == 0, from_config.stderr
    [record] = json_lines(from_config.stdout)
    assert (record["ratio"], record["method"], record["frames"]) == (0.5, "uniform", 2)
    assert record["tokens"]["generated"] <= 2
    flags_win = invoke("ask", videos / "a.mp4", QUESTION, "--config", config, "--ratio", "0.75", "-f", "4", "--json")
    assert flags_win.exit_code == 0, flags_win.stderr
    [record] = json_lines(flags_win.stdout)
    assert (record["ratio"], record["method"], record["frames"]) == (0.75, "uniform", 4)


def test_stats_json_with_compare(videos: Path, tiny_onevision_dir: Path):
    result = invoke("stats", videos / "a.mp4", "--model", tiny_onevision_dir, "--frames", "4", "--json",
                    "--compare", "uniform,forestprune,random")
    assert result.exit_code == 0, result.stderr
    [record] = json_lines(result.stdout)
    assert set(record) == STATS_KEYS
    assert set(record["tokens"]) == {"visual_before", "visual_after", "newline"}
    assert set(record["timing_s"]) == {"startup", "load", "decode", "encode", "cache_load", "prune", "total"}
    assert set(record["forest"]) == FOREST_KEYS
    forest = record["forest"]
    assert forest["nodes"] == sum(forest["depth_histogram"])
    assert forest["roots_after"] <= forest["roots_before"]
    assert record["method"] == "forestprune" and record["frames"] == 4
    k = record["tokens"]["visual_after"]
    assert sum(record["per_frame_kept"]) == k == round(0.1 * record["tokens"]["visual_before"])
    assert [c["method"] for c in record["compare"]] == ["uniform", "random"]  # --method is not repeated
    for entry in record["compare"]:
        assert set(entry) == {"method", "tokens", "per_frame_kept", "timing_s", "forest"}
        assert entry["tokens"] == {"visual_after": k} and sum(entry["per_frame_kept"]) == k
        assert entry["forest"] is None
        assert entry["timing_s"]["prune"] == round(entry["timing_s"]["prune"], 4)
    assert_rounded(record)


def test_stats_loads_only_the_vision_tower(videos: Path, tiny_onevision_dir: Path, monkeypatch: pytest.MonkeyPatch):
    import fpcli.model

    calls = []
    real = fpcli.model.load_model

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(fpcli.model, "load_model", spy, raising=False)
    result = invoke("stats", videos / "a.mp4", "--model", tiny_onevision_dir, "--frames", "2")
    assert result.exit_code == 0, result.stderr
    assert [c["vision_only"] for c in calls] == [True]
    assert re.fullmatch(rf"Loaded vision tower of {re.escape(str(tiny_onevision_dir))} \(onevision layout\) on cpu, "
                        r"float32, in \d+\.\d s\.\n", result.stderr)


def test_stats_human_output_and_viz(videos: Path, tiny_onevision_dir: Path, tmp_path: Path):
    picture = tmp_path / "viz.png"
    result = invoke("stats", videos / "a.mp4", "--model", tiny_onevision_dir, "--frames", "4", "--ratio", "0.5",
                    "--compare", "uniform,dycoke", "--viz", picture)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for expected in ("visual tokens", "(50.0% kept)", "forest", "depth 0", "methods on the same features",
                     "dycoke", "retention      one cell per frame"):
        assert expected in out
    strips = [line for line in out.splitlines() if re.fullmatch(r" +00:00  [·▁▂▃▄▅▆▇█]{4}", line)]
    assert len(strips) == 1  # compact: 4 frames, one strip line, no row per frame
    assert "00:00.00" not in out
    table = invoke("stats", videos / "a.mp4", "--model", tiny_onevision_dir, "--frames", "4", "--ratio", "0.5",
                   "--frames-table").stdout
    assert "00:00.00" in table and "retention      one cell" not in table
    assert sum(line.strip().startswith(("0 ", "1 ", "2 ", "3 ")) for line in table.splitlines()) == 4  # row per frame
    with Image.open(picture) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[1] >= 4 * 48


def test_python_m_fpcli_json_stdout_is_only_json(videos: Path, tiny_onevision_dir: Path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "fpcli", "ask", str(videos / "a.mp4"), QUESTION,
               "--model", str(tiny_onevision_dir), "--frames", "2", "--max-new-tokens", "2", "--json"]
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\n") == 1
    assert set(json.loads(out.stdout)) == ANSWER_KEYS
    assert out.stderr.startswith(f"Loaded {tiny_onevision_dir} (onevision layout) on cpu, float32, in ")


def test_sample_videos_folder(tiny_onevision_dir: Path):
    """The clips shipped in sample_videos/: ask over the folder, one JSON line per clip, in name order."""
    folder = Path(__file__).resolve().parents[1] / "sample_videos"
    clips = sorted(folder.glob("*.mp4"))
    assert clips, "sample_videos/*.mp4 missing: run scripts/make_sample_videos.py"
    result = invoke("ask", folder, "Describe the scene.", "--model", tiny_onevision_dir, *FAST, "--json")
    assert result.exit_code == 0, result.stderr
    records = json_lines(result.stdout)
    assert [r["video"] for r in records] == [str(clip) for clip in clips]
    assert all(r["frames"] == 3 and sum(r["per_frame_kept"]) == r["tokens"]["visual_after"] for r in records)


def test_visionzip_through_stats_compare_and_ask(videos: Path, tiny_video_dir: Path):
    # 4 frames of 7x7 at ratio 0.9: K = 20, 5 per frame (the encoding's extras reach prune() in both commands).
    stats = invoke("stats", videos / "a.mp4", "--model", tiny_video_dir, "--frames", "4", "--json",
                   "--compare", "visionzip")
    assert stats.exit_code == 0, stats.stderr
    [record] = json_lines(stats.stdout)
    assert [(c["method"], c["tokens"], c["per_frame_kept"]) for c in record["compare"]] == [
        ("visionzip", {"visual_after": 20}, [5, 5, 5, 5])
    ]
    ask = invoke("ask", videos / "a.mp4", QUESTION, "--model", tiny_video_dir, "--frames", "4", "--max-new-tokens",
                 "2", "--method", "visionzip", "--json")
    assert ask.exit_code == 0, ask.stderr
    [answer] = json_lines(ask.stdout)
    assert answer["method"] == "visionzip" and answer["per_frame_kept"] == [5, 5, 5, 5]
    tokens = answer["tokens"]
    assert tokens["visual_after"] == 20 and tokens["newline"] == 4 * 7  # a newline after every row of every frame
    assert tokens["prompt"] == tokens["text"] + 20 + 4 * 7


# --- options end to end, and what the user is told -----------------------------------------------------------


def stats_json(videos: Path, model: Path, *args: object) -> dict:
    result = invoke("stats", videos / "long.mp4", "--model", model, "--json", *args)
    assert result.exit_code == 0, result.stderr
    [record] = json_lines(result.stdout)
    return record


def test_fps_samples_at_a_rate(videos: Path, tiny_onevision_dir: Path):
    record = stats_json(videos, tiny_onevision_dir, "--fps", "2")  # long.mp4: 70 frames at 8 fps, 8.75 s
    assert record["frames"] == 18
    assert record["timestamps"] == [i / 2 for i in range(18)]
    assert record["warnings"] == []


def test_fps_capped_by_frames_says_so(videos: Path, tiny_onevision_dir: Path):
    result = invoke("ask", videos / "long.mp4", QUESTION, "--model", tiny_onevision_dir, "--fps", "2", "--frames",
                    "5", "--max-new-tokens", "2", "--json")
    assert result.exit_code == 0, result.stderr
    [record] = json_lines(result.stdout)
    warning = ("sampling at 2 fps gives 18 frames, more than the cap of 5: took 5 frames evenly spread over the "
               "video instead")
    assert record["warnings"] == [warning] and record["frames"] == 5
    assert f"Warning: {warning} ({videos / 'long.mp4'})\n" in result.stderr


def test_cut_short_video_is_a_warning(video_dir: Path, tiny_onevision_dir: Path):
    path = video_dir / "truncated.mp4"  # the header promises 80 frames (3.2 s); 40 decode
    result = invoke("ask", path, QUESTION, "--model", tiny_onevision_dir, *FAST, "--json")
    assert result.exit_code == 0, result.stderr
    [record] = json_lines(result.stdout)
    warning = ("only 1.60 s of the 3.20 s the file's header states can be read (file cut short?); sampled from the "
               "readable part")
    assert record["warnings"] == [warning]
    assert f"Warning: {warning} ({path})\n" in result.stderr
    quiet = invoke("stats", path, "--model", tiny_onevision_dir, "--frames", "2", "--quiet")
    assert quiet.stderr == f"Warning: {warning} ({path})\n"  # shown even with --quiet: it changes what was measured


def test_tau_s_and_tau_p_reach_forestprune(videos: Path, tiny_onevision_dir: Path):
    strict = stats_json(videos, tiny_onevision_dir, "--frames", "4", "--tau-s", "1", "--tau-p", "1")["forest"]
    assert strict["trees"] == strict["nodes"]  # nothing is that similar: every node is its own tree
    loose = stats_json(videos, tiny_onevision_dir, "--frames", "4", "--tau-s", "-1", "--tau-p", "0")["forest"]
    assert loose["trees"] < loose["nodes"] == strict["nodes"]


def test_opt_passes_any_declared_option(videos: Path, tiny_onevision_dir: Path):
    forest = stats_json(videos, tiny_onevision_dir, "--frames", "4", "--opt", "node_ratio=1")["forest"]
    assert forest["nodes"] == 4 * 8 * 8  # every token of the 8x8 grid is a node


def test_opt_reaches_a_method_registered_by_the_user(monkeypatch: pytest.MonkeyPatch, videos: Path,
                                                     tiny_onevision_dir: Path):
    import torch

    from fpcli.prune import OptionSpec, Selection, register_method, registry

    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))

    @register_method("first-frames", options=[OptionSpec("skip", 0, int, (0, 64), "frames to leave out first")])
    def first_frames(features, grid, k, *, skip):
        n = features.shape[1]
        return Selection(torch.arange(skip * n, skip * n + k, device=features.device))

    record = stats_json(videos, tiny_onevision_dir, "--frames", "4", "--method", "first-frames", "--ratio", "0.5",
                        "--opt", "skip=1")
    assert record["per_frame_kept"] == [0, 64, 64, 0]
    bad = invoke("stats", videos / "long.mp4", "--model", tiny_onevision_dir, "--method", "first-frames",
                 "--opt", "skip=99")
    assert bad.exit_code == 2
    assert bad.stderr.splitlines()[0] == "Error: skip must be an int in [0, 64], got 99"


def test_layout_flag_overrides_the_checkpoint(videos: Path, tiny_onevision_dir: Path):
    record = stats_json(videos, tiny_onevision_dir, "--frames", "3", "--layout", "video")
    assert (record["layout"], record["grid"]) == ("video", [7, 7])  # LLaVA-Video's 2x2 pooling of the 15x15 grid
    assert record["tokens"]["newline"] == 3 * 7  # a newline after every row of every frame


def test_seed_chooses_the_random_methods_tokens(videos: Path, tiny_onevision_dir: Path):
    runs = [stats_json(videos, tiny_onevision_dir, "--frames", "4", "--method", "random", "--seed", seed)
            ["per_frame_kept"] for seed in (1, 1, 2)]
    assert runs[0] == runs[1] != runs[2]


def test_temperature_and_seed_drive_sampling(videos: Path, tiny_onevision_dir: Path):
    def answer(*args: object) -> str:
        result = invoke("ask", videos / "a.mp4", QUESTION, "--model", tiny_onevision_dir, "--frames", "2",
                        "--max-new-tokens", "6", "--json", *args)
        assert result.exit_code == 0, result.stderr
        return json_lines(result.stdout)[0]["answer"]

    greedy = answer("--seed", "1")
    assert answer("--seed", "2") == greedy  # temperature 0: the seed does not matter
    hot = [answer("--temperature", "2", "--seed", seed) for seed in ("1", "1", "2")]
    assert hot[0] == hot[1] != hot[2]
    assert greedy not in hot


def test_json_timestamps_are_rounded(videos: Path, tiny_onevision_dir: Path):
    record = stats_json(videos, tiny_onevision_dir, "--frames", "7")
    assert record["timestamps"] == [round(t, 4) for t in record["timestamps"]]
    assert record["timestamps"][-1] == 69 / 8


def test_long_videos_render_compactly():
    from rich.console import Console

    from fpcli.cli.render import answer_summary, forest_lines, stats_summary

    frames = 300
    kept = [i % 50 for i in range(frames)]
    result = {"video": "v.mp4", "model": "m", "layout": "onevision", "method": "forestprune", "ratio": 0.9,
              "frames": frames, "grid": [8, 8], "per_frame_kept": kept, "timestamps": [i / 2 for i in range(frames)],
              "tokens": {"visual_before": 64 * frames, "visual_after": sum(kept), "newline": 1, "text": 5,
                         "prompt": 9, "generated": 1},
              "timing_s": dict.fromkeys(("load", "decode", "encode", "cache_load", "prune", "prefill", "generate",
                                         "total"), 0.0),
              "peak_memory_mb": 1.0, "prefill_tflops": {"before": 1.0, "after": 0.1}, "cache": "off",
              "forest": {"nodes": 10, "trees": 3, "roots_before": 3, "roots_after": 2,
                         "depth_histogram": list(range(30))},
              "compare": []}
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(stats_summary(result, 80))
    console.print(answer_summary(result, 80))
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    strips = [line for line in lines if re.fullmatch(r" +\d\d:\d\d  [·▁▂▃▄▅▆▇█]+", line)]
    assert sum(len(line.split()[-1]) for line in strips) == frames  # a cell per frame, wrapped
    assert "(9 frames a cell)" in text  # ask's strip: 300 frames in 34 cells, what fits in one line
    depth_rows = forest_lines(result["forest"]).renderables[1:]
    assert len(depth_rows) == 10 and str(depth_rows[0]).startswith("  depth 0-2")  # 30 depths, 3 to a row


