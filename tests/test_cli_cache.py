"""The feature cache through the commands (ask, stats, batch, chat, cache info/clear) and `chat` itself, on tiny
random checkpoints: hits skip decoding and the tower, --no-cache and FORESTPRUNE_NO_CACHE turn it off, batch
encodes a clip once per run, chat answers as `ask` does."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fpcli.cli import app
from test_cli_run import assert_rounded, load_calls, write_clip  # noqa: F401 (a fixture)

runner = CliRunner()
FAST = ["--frames", "3", "--max-new-tokens", "3"]
QUESTIONS = ["What is moving?", "What colour is the background?", "How many objects are there?"]


def invoke(*args: object, input: str | None = None, env: dict | None = None):
    return runner.invoke(app, [str(a) for a in args], input=input, env=env)


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("cache-clips") / "a.mp4")


def features_dir() -> Path:
    return Path(os.environ["FORESTPRUNE_CACHE"]) / "features"


def ask(clip: Path, model: Path, *extra: object, question: str = QUESTIONS[0], env: dict | None = None) -> dict:
    result = invoke("ask", clip, question, "--model", model, *FAST, "--json", *extra, env=env)
    assert result.exit_code == 0, result.stderr
    [record] = json_lines(result.stdout)
    assert_rounded(record)
    return record


def test_ask_twice_hits_the_cache_with_the_same_answer(clip, tiny_onevision_dir):
    cold, warm = ask(clip, tiny_onevision_dir), ask(clip, tiny_onevision_dir)
    assert (cold["cache"], warm["cache"]) == ("miss", "hit")
    assert min(cold["timing_s"]["decode"], cold["timing_s"]["encode"]) > 0 and cold["timing_s"]["cache_load"] == 0
    assert (warm["timing_s"]["decode"], warm["timing_s"]["encode"]) == (0.0, 0.0)
    assert warm["timing_s"]["cache_load"] > 0
    for field in ("answer", "tokens", "per_frame_kept", "timestamps", "frames", "grid"):
        assert warm[field] == cold[field], field
    assert len(list(features_dir().glob("*.safetensors"))) == 1
    assert ask(clip, tiny_onevision_dir, "--frames", "2")["cache"] == "miss"  # another sampling


def test_a_hit_shows_the_cache_load_where_decode_and_encode_were(clip, tiny_onevision_dir):
    ask(clip, tiny_onevision_dir)
    result = invoke("ask", clip, QUESTIONS[0], "--model", tiny_onevision_dir, *FAST)
    assert result.exit_code == 0, result.stderr
    (time_line,) = [line for line in result.stdout.splitlines() if line.startswith("time ")]
    assert " · cache load " in time_line and "decode" not in time_line and "encode" not in time_line


def test_no_cache_flag_and_environment_turn_it_off(clip, tiny_onevision_dir):
    assert ask(clip, tiny_onevision_dir, "--no-cache")["cache"] == "off"
    assert ask(clip, tiny_onevision_dir, env={"FORESTPRUNE_NO_CACHE": "1"})["cache"] == "off"
    assert not features_dir().exists()


def test_bad_cache_sizes_are_usage_errors(clip, tiny_onevision_dir):
    flag = invoke("ask", clip, "Q?", "--model", tiny_onevision_dir, "--cache-max-size", "lots")
    assert flag.exit_code == 2 and "cache size must be a positive size such as 5GB or 500MB, got 'lots'" in flag.stderr
    env = invoke("ask", clip, "Q?", "--model", tiny_onevision_dir, env={"FORESTPRUNE_CACHE_MAX_SIZE": "0MB"})
    assert env.exit_code == 2 and "got '0MB'" in env.stderr


def test_a_cap_too_small_for_the_clip_warns_once_and_answers(clip, tiny_onevision_dir):
    result = invoke("ask", clip, clip, "Q?", "--model", tiny_onevision_dir, *FAST, "--json", "--cache-max-size", "1kB")
    assert result.exit_code == 0, result.stderr
    assert [r["cache"] for r in json_lines(result.stdout)] == ["miss", "miss"]
    assert result.stderr.count("exceed the feature cache size 1.0 kB; not kept") == 1


def test_a_corrupt_entry_is_a_miss_with_a_warning_then_a_hit(clip, tiny_onevision_dir):
    ask(clip, tiny_onevision_dir)
    (entry,) = features_dir().glob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[:100])
    result = invoke("ask", clip, "Q?", "--model", tiny_onevision_dir, *FAST, "--json")
    assert result.exit_code == 0, result.stderr
    [record] = json_lines(result.stdout)
    assert record["cache"] == "miss"
    assert f"Warning: ignored a feature cache entry (truncated): {entry}; it is rewritten ({clip})" in result.stderr
    assert ask(clip, tiny_onevision_dir)["cache"] == "hit"


def test_stats_hits_the_entry_ask_stored_and_draws_viz_from_decoded_frames(clip, tiny_onevision_dir, tmp_path):
    cold = ask(clip, tiny_onevision_dir)
    picture = tmp_path / "keep.png"
    result = invoke("stats", clip, "--model", tiny_onevision_dir, "--frames", "3", "--json", "--viz", picture)
    assert result.exit_code == 0, result.stderr
    [record] = json_lines(result.stdout)
    assert record["cache"] == "hit" and record["timing_s"]["encode"] == 0.0
    assert record["per_frame_kept"] == cold["per_frame_kept"]  # same features, same selection
    assert picture.stat().st_size > 0


def test_batch_encodes_each_clip_once_per_run(clip, tiny_onevision_dir, tmp_path, load_calls):
    jobs = tmp_path / "jobs.jsonl"
    items = [{"id": f"q{i}", "video": str(clip), "question": q} for i, q in enumerate(QUESTIONS)]
    items.insert(1, {"id": "two", "video": str(clip), "question": "Q?", "options": {"frames": 2}})
    items.append({"id": "uniform", "video": str(clip), "question": "Q?", "options": {"method": "uniform"}})
    jobs.write_text("".join(json.dumps(item) + "\n" for item in items))
    for flags, first in (((), "miss"), (("--no-cache",), "off")):
        out = tmp_path / f"out{len(flags)}.jsonl"
        result = invoke("batch", jobs, "--model", tiny_onevision_dir, *FAST, "--out", out, *flags)
        assert result.exit_code == 0, result.stderr
        records = [json.loads(line) for line in out.read_text().splitlines()]
        # Units in the order of their first item: the 3-frame clip's four items, then the 2-frame clip's.
        assert [r["id"] for r in records] == ["q0", "q1", "q2", "uniform", "two"]
        encoded = [r["timing_s"]["encode"] > 0 for r in records]
        assert encoded == [True, False, False, False, True]
        assert [r["timing_s"]["prune"] > 0 for r in records] == [True, False, False, True, True]  # a session each
        assert {r["cache"] for r in records} == {first}
    assert [vision_only for _, vision_only in load_calls] == [False, False]  # one load per run
    again = invoke("batch", jobs, "--model", tiny_onevision_dir, *FAST, "--out", tmp_path / "again.jsonl")
    records = [json.loads(line) for line in (tmp_path / "again.jsonl").read_text().splitlines()]
    assert again.exit_code == 0 and {r["cache"] for r in records} == {"hit"}


def test_batch_answers_equal_separate_asks(clip, tiny_onevision_dir, tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": str(i), "video": str(clip), "question": q}) + "\n"
                            for i, q in enumerate(QUESTIONS)))  # fmt: skip
    assert invoke("batch", jobs, "--model", tiny_onevision_dir, *FAST, "--no-cache").exit_code == 0
    records = [json.loads(line) for line in (tmp_path / "jobs.results.jsonl").read_text().splitlines()]
    asked = [ask(clip, tiny_onevision_dir, "--no-cache", question=q) for q in QUESTIONS]
    assert [(r["answer"], r["tokens"]) for r in records] == [(a["answer"], a["tokens"]) for a in asked]


def test_cache_info_and_clear(clip, tiny_onevision_dir):
    empty = invoke("cache", "info", "--json")
    assert empty.exit_code == 0
    assert json.loads(empty.stdout) == {"entries": 0, "bytes": 0, "root": str(features_dir()),
                                        "max_bytes": 5 * 10**9, "enabled": True}  # fmt: skip
    ask(clip, tiny_onevision_dir)
    facts = json.loads(invoke("cache", "info", "--json", "--cache-max-size", "2GB").stdout)
    size = (next(features_dir().glob("*.safetensors"))).stat().st_size
    assert (facts["entries"], facts["bytes"], facts["max_bytes"]) == (1, size, 2 * 10**9)
    text = invoke("cache", "info", env={"FORESTPRUNE_NO_CACHE": "1"}).stdout
    assert f"location  {features_dir()}\nentries   1\n" in text and "disabled  by FORESTPRUNE_NO_CACHE" in text
    cleared = invoke("cache", "clear")
    assert cleared.exit_code == 0
    assert cleared.stdout.startswith("Removed 1 entry (") and cleared.stdout.rstrip().endswith(str(features_dir()))
    assert json.loads(invoke("cache", "info", "--json").stdout)["entries"] == 0


def chat(clip: Path, model: Path, lines: list[str], *extra: object):
    return invoke("chat", clip, "--model", model, *FAST, *extra, input="".join(line + "\n" for line in lines))


def test_chat_from_a_pipe_equals_separate_asks(clip, tiny_onevision_dir):
    result = chat(clip, tiny_onevision_dir, ["", *QUESTIONS, "/exit", "never asked"], "--json", "--no-cache")
    assert result.exit_code == 0, result.stderr
    records = json_lines(result.stdout)
    asked = [ask(clip, tiny_onevision_dir, "--no-cache", question=q) for q in QUESTIONS]
    assert [r["question"] for r in records] == QUESTIONS
    assert [(r["answer"], r["tokens"], r["per_frame_kept"]) for r in records] == [
        (a["answer"], a["tokens"], a["per_frame_kept"]) for a in asked]
    for record in records:
        assert_rounded(record)
    first, later = records[0]["timing_s"], [r["timing_s"] for r in records[1:]]
    assert min(first["load"], first["decode"], first["encode"], first["prune"]) > 0
    assert all((t["load"], t["decode"], t["encode"], t["prune"]) == (0.0,) * 4 for t in later)  # no tower again
    text = chat(clip, tiny_onevision_dir, QUESTIONS[:2])
    assert text.exit_code == 0 and text.stdout.splitlines() == [a["answer"] for a in asked[:2]]


def test_chat_history_puts_earlier_turns_in_the_prompt(clip, tiny_onevision_dir):
    plain = json_lines(chat(clip, tiny_onevision_dir, QUESTIONS[:2], "--json").stdout)
    kept = json_lines(chat(clip, tiny_onevision_dir, QUESTIONS[:2], "--json", "--history").stdout)
    assert kept[0]["tokens"] == plain[0]["tokens"]
    assert kept[1]["tokens"]["text"] > plain[1]["tokens"]["text"] + plain[0]["tokens"]["generated"]


def test_a_question_too_long_fails_alone(clip, tiny_onevision_dir):
    result = chat(clip, tiny_onevision_dir, [QUESTIONS[0], "why " * 40000, QUESTIONS[1]], "--json")
    assert result.exit_code == 1
    assert [r["question"] for r in json_lines(result.stdout)] == [QUESTIONS[0], QUESTIONS[1]]
    assert "Error: the prompt needs" in result.stderr and "context is 32768 tokens" in result.stderr


def test_ctrl_c_during_an_answer_keeps_the_chat(clip, tiny_onevision_dir, monkeypatch):
    """Interactive chat through the real command: Ctrl-C in the first answer, the second still answered."""
    from fpcli.cli import chat as chat_command
    from fpcli.model.llava.session import ClipSession

    lines = iter([QUESTIONS[0], QUESTIONS[1]])

    def typed(prompt: str = "") -> str:
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    real_ask, calls = ClipSession.ask, []

    def interrupted_once(self, *args, **kwargs):
        calls.append(self.questions)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real_ask(self, *args, **kwargs)

    monkeypatch.setattr("builtins.input", typed)
    monkeypatch.setattr(ClipSession, "ask", interrupted_once)
    monkeypatch.setattr(chat_command, "run_chat", functools.partial(chat_command.run_chat, interactive=True))
    result = invoke("chat", clip, "--model", tiny_onevision_dir, *FAST, "--json")
    assert result.exit_code == 0, result.stderr
    assert "answer cancelled" in result.stderr
    assert [r["question"] for r in json_lines(result.stdout)] == [QUESTIONS[1]]
    assert calls == [0, 0]  # the cancelled answer left the session as it was


def test_visionzip_prunes_the_same_from_cached_extras(clip, tiny_onevision_dir):
    """visionzip reads the tower's attention and keys: a hit must bring them back (ClipFeatures.extras)."""
    runs = [invoke("stats", clip, "--model", tiny_onevision_dir, "--frames", "3", "--method", "visionzip", "--json")
            for _ in range(2)]
    assert [r.exit_code for r in runs] == [0, 0], runs[-1].stderr
    cold, warm = (json_lines(r.stdout)[0] for r in runs)
    assert (cold["cache"], warm["cache"]) == ("miss", "hit")
    assert warm["per_frame_kept"] == cold["per_frame_kept"] and warm["tokens"] == cold["tokens"]


def test_qwen_clips_are_cached_per_pixel_budget(clip, tiny_qwen25_dir):
    """Qwen-VL samples by its own rule and resizes by --max-pixels: both decide the features, and a hit gives the
    same answer."""
    cold = ask(clip, tiny_qwen25_dir, "--max-pixels", "256")
    warm = ask(clip, tiny_qwen25_dir, "--max-pixels", "256")
    other = ask(clip, tiny_qwen25_dir, "--max-pixels", "1024")
    assert (cold["cache"], warm["cache"], other["cache"]) == ("miss", "hit", "miss")
    assert (warm["answer"], warm["tokens"], warm["grid"]) == (cold["answer"], cold["tokens"], cold["grid"])
    assert warm["timing_s"]["encode"] == 0.0 and other["grid"] != cold["grid"]
