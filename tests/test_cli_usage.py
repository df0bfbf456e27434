"""The CLI without a model: --help speed (no heavy imports), option checks, error lines and exit codes.

Every bad-usage case passes a --model that does not exist: exit code 2 (not 1) proves the options
were checked before any model was resolved or loaded.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fpcli import __version__
from fpcli.cli import app
from fpcli.cli.errors import CliError, describe
from fpcli.run.settings import RunSettings

runner = CliRunner()
NO_MODEL = ["--model", "/nonexistent/model"]
CLIP = Path(__file__).resolve().parents[1] / "sample_videos" / "hard_cuts.mp4"


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file that exists (option checks come before decoding, so its content does not matter)."""
    path = tmp_path_factory.mktemp("usage") / "clip.mp4"
    path.write_bytes(b"not decoded")
    return path


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def test_import_does_not_load_torch_transformers_or_av():
    code = "import sys, fpcli.cli; print(sorted(m for m in ('torch', 'transformers', 'av') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_python_m_fpcli_help():
    out = subprocess.run([sys.executable, "-m", "fpcli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "Usage: forestprune [OPTIONS] COMMAND [ARGS]..." in out.stdout  # named forestprune, not fpcli
    listed = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("│ ") and len(line.split()) > 2]
    assert [name for name in listed if name in ("ask", "stats", "batch", "convert")] == [
        "ask", "stats", "batch", "convert"]


@pytest.mark.parametrize(
    ("command", "usage", "text"),
    [
        ("ask", "[OPTIONS] [VIDEO]... [QUESTION]", "--max-new-tokens"),
        ("stats", "[OPTIONS] {VIDEO}...", "--compare"),
        ("batch", "[OPTIONS] {JOBS}", "YAML or JSONL file of {video, question, [id], [options]} items."),
        ("convert", "[OPTIONS] {SOURCE} {OUT_DIR}", "--force"),
    ],
)
def test_command_help(command: str, usage: str, text: str):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert f"Usage: forestprune {command} {usage}" in result.stdout
    assert text in result.stdout  # help texts are Rich markup: a literal [..] must be escaped to show


def test_no_arguments_prints_help_and_exits_2():
    result = run()
    assert result.exit_code == 2
    assert "Usage:" in result.stdout and "ask" in result.stdout


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout == f"forestprune {__version__}\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ratio", "1.5"], "Error: Invalid value for '--ratio' / '-r': ratio must be in [0, 1), got 1.5"),
        (["--ratio", "-0.1"], "Error: Invalid value for '--ratio' / '-r': ratio must be in [0, 1), got -0.1"),
        (["--method", "nope"], "Error: unknown method 'nope'; available: none, uniform, random"),
        (["--frames", "0"], "Error: Invalid value for '--frames' / '-f'"),
        (["--frames", "1025"], "Error: Invalid value for '--frames' / '-f'"),
        (["--device", "gpu"], "Error: Invalid value for '--device': 'gpu' is not auto, cpu, cuda or cuda:N"),
        (["--dtype", "int8"], "Error: Invalid value for '--dtype'"),
        (["--max-new-tokens", "0"], "Error: Invalid value for '--max-new-tokens'"),
        (["--bogus"], "Error: No such option: --bogus"),
    ],
)
def test_bad_option_is_usage_error(video: Path, args: list[str], message: str):
    result = run("ask", video, "What?", *NO_MODEL, *args)
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith(message)
    assert lines[1:] == ["Hint: see 'forestprune ask --help'"]
    assert result.stdout == ""


def test_bad_prune_option_is_usage_error(video: Path):
    result = run("stats", video, *NO_MODEL, "--compare", "uniform,nope")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "Error: unknown method 'nope'; available: none, uniform, random, gprune, divprune, dycoke, forestprune, "
        "visionzip, vidcom2, fastvid, holitom, flashvid, fastv, framefusion, sttm",
        "Hint: see 'forestprune stats --help'",
    ]


@pytest.mark.parametrize("where", ["flag", "config"])
def test_method_none_with_a_ratio_is_usage_error(video: Path, tmp_path: Path, where: str):
    config = tmp_path / "fp.yaml"
    config.write_text("ratio: 0.5\n")
    ratio = ["--ratio", "0.5"] if where == "flag" else ["--config", config]
    result = run("ask", video, "What?", *NO_MODEL, "--method", "none", *ratio)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "Error: method 'none' keeps every token; ratio must be 0",
        "Hint: use --ratio 0 with --method none",
    ]


def test_ratio_not_given_is_zero_for_method_none():
    assert RunSettings().prune_ratio == 0.9
    assert RunSettings(method="none").prune_ratio == 0.0
    assert RunSettings(method="none", ratio=0.0).prune_ratio == 0.0
    assert RunSettings(method="uniform", ratio=0.5).prune_ratio == 0.5
    assert RunSettings().override({"method": "none"}).prune_ratio == 0.0  # a batch item's option
    assert RunSettings(method="none").override({"method": "uniform"}).prune_ratio == 0.9
    with pytest.raises(ValueError, match="^method 'none' keeps every token; ratio must be 0$"):
        RunSettings(ratio=0.5).override({"method": "none"})


def test_bad_video_of_a_profile_fails_without_resolving_the_model(monkeypatch: pytest.MonkeyPatch, video: Path):
    """A profile knows its default frame count: the video is decoded (and rejected) before the hub is asked."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # were it asked, this would be a model error instead
    result = run("stats", video, "--model", "llava-ov-0.5b")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and result.stderr.strip().endswith(f"({video})")
    assert "llava" not in result.stderr


def test_missing_question_is_usage_error(video: Path):
    result = run("ask", video)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "Error: Missing argument 'QUESTION'."


def test_missing_video_file(tmp_path: Path):
    result = run("ask", tmp_path / "missing.mp4", "What?", *NO_MODEL)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: no such file or folder ({tmp_path / 'missing.mp4'})"


def test_folder_without_videos(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("no video here")
    result = run("stats", tmp_path, *NO_MODEL)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == f"Error: no video files in folder ({tmp_path})"
    assert result.stderr.splitlines()[1].startswith("Hint: looked for .3gp .avi")


def test_config_unknown_key(video: Path, tmp_path: Path):
    config = tmp_path / "fp.yaml"
    config.write_text("ratio: 0.5\nspeed: fast\n")
    result = run("ask", video, "What?", "--config", config)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: Invalid value for '--config': unknown option 'speed' in {config}")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("ratio: 1.5\n", "1.5"),
        # One config file can serve every command: `frames_table` (stats only) is ignored by ask, not rejected,
        # and max_new_tokens is ask's --max-new-tokens; the first real problem is the ratio.
        ("frames_table: true\nmax_new_tokens: 8\nratio: 2\n", "2.0"),
    ],
    ids=["bad-value", "keys-of-other-commands"],
)
def test_config_bad_value_names_the_file(video: Path, tmp_path: Path, text: str, shown: str):
    config = tmp_path / "fp.yaml"
    config.write_text(text)
    result = run("ask", video, "What?", "--config", config)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        f"Error: Invalid value for '--config': 'ratio' in {config}: ratio must be in [0, 1), got {shown} "
        "(the fraction of visual tokens to drop)")


def test_config_value_checked_before_model_and_flag_wins(video: Path, tmp_path: Path):
    """A bad config method is an error; the same bad value overridden on the command line is not reached."""
    config = tmp_path / "fp.yaml"
    config.write_text("method: nope\nmodel: /nonexistent/model\n")
    assert run("ask", video, "What?", "--config", config).exit_code == 2
    overridden = run("ask", video, "What?", "--config", config, "--method", "uniform")
    assert overridden.exit_code == 1  # got past the options, failed on the (nonexistent) model
    assert overridden.stderr.splitlines() == [
        "Error: model '/nonexistent/model' is not a profile (llava-ov-0.5b, llava-ov-7b, llava-ov-72b, "
        "llava-video-7b, qwen2.5-vl-3b, qwen2.5-vl-7b, qwen3-vl-2b, qwen3-vl-4b, qwen3-vl-8b), a local directory or a "
        "Hugging Face id"]


def test_config_not_a_mapping(video: Path, tmp_path: Path):
    config = tmp_path / "fp.yaml"
    config.write_text("- ratio\n")
    result = run("ask", video, "What?", "--config", config)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        f"Error: Invalid value for '--config': {config} must be a YAML mapping of option names to values")


def test_runtime_error_is_one_line_exit_1(video: Path, tmp_path: Path):
    result = run("ask", video, "What?", "--model", tmp_path)  # an empty folder is not a checkpoint
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"Error: {tmp_path} is not a model checkpoint: it has no config.json"]
    assert result.stdout == ""


@pytest.mark.parametrize("flags", [["--debug"], ["GLOBAL"]])
def test_debug_shows_traceback(video: Path, tmp_path: Path, flags: list[str]):
    args = ["ask", video, "What?", "--model", tmp_path]
    args = ["--debug", *args] if flags == ["GLOBAL"] else [*args, *flags]
    result = run(*args)
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch):
    import fpcli.model

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fpcli.model, "load_model", interrupted, raising=False)  # loading starts after decoding
    result = run("ask", CLIP, "What?", *NO_MODEL, "--frames", "2")
    assert result.exit_code == 130
    assert result.stderr.strip() == "Interrupted."


def test_unexpected_exception_is_reported_as_bug(monkeypatch: pytest.MonkeyPatch):
    import fpcli.model

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(fpcli.model, "load_model", broken, raising=False)
    result = run("ask", CLIP, "What?", *NO_MODEL, "--frames", "2")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: ZeroDivisionError: division by zero",
        "Hint: this is a bug; run again with --debug and report the traceback",
    ]


def test_describe_known_errors(tmp_path: Path):
    from fpcli.model import ModelError

    assert describe(ModelError("cannot load x")) == ("cannot load x", None, 1)
    assert describe(CliError("bad thing", tmp_path / "f.mp4", hint="do y")) == (
        f"bad thing ({tmp_path}/f.mp4)", "do y", 1)
    assert describe(FileNotFoundError(2, "No such file or directory", "a.mp4")) == (
        "No such file or directory (a.mp4)", None, 1)


def test_default_model_follows_cuda(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    import torch

    from fpcli.run.source import default_model
    from fpcli.cli.progress import Reporter

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_model("auto", Reporter()) == "llava-ov-0.5b"
    assert "using llava-ov-0.5b (no CUDA device" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_model("auto", Reporter()) == "llava-video-7b"
    assert default_model("cpu", Reporter(quiet=True)) == "llava-ov-0.5b"
    assert "using llava-video-7b (CUDA is available)" in capsys.readouterr().err


def test_progress_bars_count_items_or_bytes(monkeypatch: pytest.MonkeyPatch):
    from rich.console import Console

    from fpcli.cli.progress import Reporter

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    reporter = Reporter()
    reporter.callback("decode", 3, 8)
    reporter.callback("download", 5 * 10**8, 10**9)  # stages of a checkpoint download / conversion count bytes
    console = Console(record=True, width=100, file=io.StringIO())
    console.print(reporter.bars.make_tasks_table(reporter.bars.tasks))
    decode, download = console.export_text().splitlines()
    assert decode.startswith("Decoding frames") and " 3/8 " in decode
    assert download.startswith("Downloading") and " 0.5/1.0 GB " in download


def test_item_overrides_are_checked():
    base = RunSettings()
    assert base.override({"ratio": 0.5, "max-new-tokens": 4, "frames": 2}) == RunSettings(
        ratio=0.5, max_new_tokens=4, frames=2)
    for options, message in [
        ({"ratio": 1.0}, "ratio must be in [0, 1), got 1.0"),
        ({"frames": 0}, "frames must be in 1..1024, got 0"),
        ({"frames": "8"}, "option 'frames' must be int, got '8'"),
        ({"ratio": True}, "option 'ratio' must be float, got True"),
        ({"model": "x"}, "unknown option 'model'"),
        ({"tau_s": 5}, "tau_s must be a number in [-1, 1], got 5"),
        ({"method": "uniform", "tau_s": 0.5}, "unknown option 'tau_s' (allowed: ratio, budget, method, frames, fps, "
         "max_pixels, max_new_tokens, temperature, seed)"),
    ]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            base.override(options)


def test_item_method_options():
    base = RunSettings(method_options={"tau_s": 0.5})
    assert base.override({"tau-p": 0.1}).method_options == {"tau_s": 0.5, "tau_p": 0.1}
    assert base.override({"method": "uniform"}).method_options == {}  # the command line's tau_s is forestprune's
    assert base.override({"method": "random", "seed": 4}).prune_options() == {"seed": 4}


def test_prune_options_by_method():
    settings = RunSettings(method_options={"tau_s": 0.7}, seed=3, compare=("uniform", "forestprune", "random"))
    assert settings.prune_options() == {"tau_s": 0.7}
    assert settings.prune_options("random") == {"seed": 3}
    assert settings.prune_options("uniform") == {}
    assert settings.methods() == ["forestprune", "uniform", "random"]


def test_convert_errors_go_through_the_shared_handler(tmp_path: Path):
    (tmp_path / "source").mkdir()
    result = run("convert", tmp_path / "source", tmp_path / "out")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {tmp_path / 'source'} has no config.json"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("question", "shown"),
    [
        ("FILE", "Error: Missing argument 'QUESTION' ('{file}' is a file, not a question)."),  # ask a.mp4 b.mp4
        ("", "Error: Missing argument 'QUESTION' (it is blank)."),
        ("   ", "Error: Missing argument 'QUESTION' (it is blank)."),
    ],
)
def test_a_question_that_is_a_file_or_blank_is_missing(video: Path, tmp_path: Path, question: str, shown: str):
    other = tmp_path / "b.mp4"
    other.write_bytes(b"not decoded")
    given = str(other) if question == "FILE" else question
    result = run("ask", video, given, *NO_MODEL)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [shown.format(file=other), "Hint: see 'forestprune ask --help'"]
    assert result.stdout == ""


def test_a_question_too_long_to_be_a_path_is_a_question(video: Path):
    """`Path(question).exists()` raises ENAMETOOLONG for a 40,000-character question: it is a question, not a file,
    so the command goes on past the question check (to the missing model here)."""
    result = run("ask", video, "why " * 10_000, "--model", str(video.parent / "no-such-model"))
    assert result.exit_code == 1
    assert "Missing argument" not in result.stderr and "File name too long" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "none", "--ratio", "0.05"], "Error: method 'none' keeps every token; ratio must be 0"),
        (["--method", "uniform", "--tau-s", "0.5"],
         "Error: unknown option 'tau_s' for method 'uniform'; it takes no options"),
        (["--method", "uniform", "--tau-s", "5"],
         "Error: Invalid value for '--tau-s': tau_s must be a number in [-1, 1], got 5.0"),
        (["--tau-p", "1.5"], "Error: Invalid value for '--tau-p': tau_p must be a number in [0, 1], got 1.5"),
        (["--method", "random", "--tau-p", "0.5"],
         "Error: unknown option 'tau_p' for method 'random'; accepted options: seed"),
        (["--opt", "node_ratio"], "Error: --opt takes NAME=VALUE, got 'node_ratio'"),
        (["--opt", "node_ratio=2"], "Error: node_ratio must be a number in (0, 1], got 2.0"),
        (["--opt", "node_ratio=half"], "Error: node_ratio must be a number, got 'half'"),
        (["--opt", "depth=3"],
         "Error: unknown option 'depth' for method 'forestprune'; accepted options: tau_s, tau_p, node_ratio"),
        (["--method", "random", "--opt", "seed=-1"], "Error: seed must be an int in [0, 2**63), got -1"),
    ],
)
def test_prune_settings_are_usage_errors_before_any_load(video: Path, args: list[str], message: str):
    """Checked by the registry's validate(), shape-free: ratio 0.05 with none fails even where K would round to all."""
    result = run("ask", video, "What?", *NO_MODEL, *args)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.splitlines()[0] == message
    assert len(result.stderr.splitlines()) == 2  # and a hint


def test_stats_options_go_to_the_methods_that_take_them(video: Path):
    """--tau-s is forestprune's: fine when forestprune is compared, a usage error when no method run takes it."""
    ok = run("stats", video, *NO_MODEL, "--method", "uniform", "--compare", "forestprune", "--tau-s", "0.5")
    assert ok.exit_code == 1 and "is not a profile" in ok.stderr  # got past the checks, to the model
    bad = run("stats", video, *NO_MODEL, "--method", "uniform", "--compare", "dycoke", "--tau-s", "0.5")
    assert bad.exit_code == 2
    assert bad.stderr.splitlines()[0] == "Error: unknown option 'tau_s' for method 'uniform'; it takes no options"


@pytest.mark.parametrize("name", ["out.xyz", "out"])
def test_viz_extension_is_checked_up_front(video: Path, tmp_path: Path, name: str):
    result = run("stats", video, *NO_MODEL, "--viz", tmp_path / name)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"Error: Invalid value for '--viz': {tmp_path / name} must end in .png, .jpg, .jpeg, .webp (a picture) or "
        ".html (the report page)",
        "Hint: see 'forestprune stats --help'",
    ]


@pytest.mark.parametrize("command", ["stats", "ask"])
def test_viz_folder_must_be_writable(video: Path, tmp_path: Path, command: str):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    question = ["What?"] if command == "ask" else []
    result = run(command, video, *question, *NO_MODEL, "--viz", blocker / "sub" / "out.html")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (f"Error: Invalid value for '--viz': cannot write {blocker}/sub/out.html: "
                                             f"{blocker} is not a writable folder")
    missing = run(command, video, *question, *NO_MODEL, "--viz", tmp_path / "new" / "deeper" / "out.png")
    assert missing.exit_code == 1 and "is not a profile" in missing.stderr  # folders to make: past the checks


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--viz-trees", "2"], "Error: --viz-trees draws on the --viz picture"),
        (["--viz", "out.png", "--viz-trees", "2", "--method", "gprune", "--compare", "visionzip"],
         "Error: --viz-trees draws forestprune's trees, and no method run builds a forest (gprune, visionzip)"),
        (["--viz", "out.png", "--viz-trees", "11"],
         "Error: Invalid value for '--viz-trees': Input should be less than or equal to 10"),
    ],
    ids=["without-viz", "no-forest", "too-many"],
)
@pytest.mark.parametrize("command", ["stats", "ask"])
def test_viz_trees_is_checked_up_front(video: Path, tmp_path: Path, command: str, args: list[str], message: str):
    question = ["What?"] if command == "ask" else []
    args = [str(tmp_path / arg) if arg == "out.png" else arg for arg in args]
    result = run(command, video, *question, *NO_MODEL, *args)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == message


def test_errors_are_mapped_by_type(tmp_path: Path):
    from fpcli.cli.errors import CliUsageError
    from fpcli.errors import InputError
    from fpcli.model import ModelError

    assert describe(PermissionError(13, "Permission denied", str(tmp_path / "x"))) == (
        f"Permission denied ({tmp_path / 'x'})", None, 1)
    assert describe(InputError("prompt needs 40000 tokens, the context holds 32768", hint="raise --ratio")) == (
        "prompt needs 40000 tokens, the context holds 32768", "raise --ratio", 2)
    assert describe(CliUsageError("no such file or folder", "a.mp4")) == ("no such file or folder (a.mp4)", None, 2)
    assert describe(ModelError("x", hint="y")) == ("x", "y", 1)
    assert describe(MemoryError()) == ("out of memory", "try fewer --frames or a higher --ratio", 1)


def test_help_texts_come_from_the_registries():
    result = runner.invoke(app, ["ask", "--help"], env={"COLUMNS": "300"})
    text = " ".join(result.stdout.replace("│", " ").split())  # the help panel's wrapped lines as one text
    names = ("none, uniform, random, gprune, divprune, dycoke, forestprune, visionzip, vidcom2, fastvid, holitom, "
             "flashvid, fastv, framefusion, sttm")
    assert (f"'forestprune methods' lists each with its options: {names}, or a method registered in Python; fastv, "
            "framefusion, sttm prune inside the LLM, holitom, flashvid before it and inside it (K / llm_keep tokens "
            "enter, K from their layer on). At --ratio r every method ends with K = max(1, round((1 - r) * N)) of the "
            "N visual tokens in the LLM; docs/methods.md says how each maps its authors' own ratio.") in text
    assert f"More methods to run on the same features, comma-separated, from {names}." in text
    assert "ForestPrune: cosine similarity a token needs to join an earlier frame's tree, in [-1, 1], default 0.9" in text
    assert ("Profile (llava-ov-0.5b, llava-ov-7b, llava-ov-72b, llava-video-7b, qwen2.5-vl-3b, qwen2.5-vl-7b, "
            "qwen3-vl-2b, qwen3-vl-4b, qwen3-vl-8b)") in text
    assert "--opt" in text and "<onevision|video|qwen2.5-vl|qwen3-vl>" in text


def test_devtools_refuses_a_folder_that_is_not_empty(tmp_path: Path):
    (tmp_path / "keep.txt").write_text("mine")
    out = subprocess.run([sys.executable, "-m", "fpcli.devtools", "tiny-checkpoint", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr == f"Error: {tmp_path} exists and is not an empty folder\n"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
