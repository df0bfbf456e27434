"""lmms-eval's real CLI (`python -m lmms_eval --model forestprune ...`) offline, on the local tasks in
tests/lmms_task (five questions about three sample videos, one about a picture), with tiny LLaVA and Qwen-VL
checkpoints: every request answered, each answer `forestprune ask`'s, each video encoded once, bad --model_args
reported in our words.

Marked `lmms_eval`: they need lmms-eval, which has its own venv; .ci/lmms-eval builds it and runs them
(`pytest -m lmms_eval tests/test_lmms_eval.py`). The main suite deselects them (pyproject's addopts) and its
header says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lmms_eval

ROOT = Path(__file__).resolve().parents[1]
TASK_DIR = ROOT / "tests" / "lmms_task"
VIDEOS = ROOT / "sample_videos"
FRAMES = 4
VIDEO_MAX_NEW_TOKENS = 6  # fp_videoqa.yaml's generation_kwargs
VIDEO_UNTIL = "\n"


def _env(cache: Path, home: Path) -> dict[str, str]:
    """Offline, one thread, its own feature cache and Hugging Face home."""
    return {**os.environ, "FORESTPRUNE_CACHE": str(cache), "HF_HOME": str(home), "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def run_lmms_eval(model_args: str, out: Path, cache: Path, tasks: str = "fp_videoqa,fp_imageqa"
                  ) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "lmms_eval", "--model", "forestprune", "--model_args", model_args,
               "--tasks", tasks, "--include_path", str(TASK_DIR), "--output_path", str(out), "--log_samples"]
    return subprocess.run(command, cwd=ROOT, env=_env(cache, out / "hf"), capture_output=True, text=True,
                          timeout=600)


def samples(out: Path, task: str) -> list[dict]:
    """The logged samples of `task`, by doc_id."""
    (path,) = out.glob(f"*/*_samples_{task}.jsonl")
    return sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda s: s["doc_id"])


def ask(videos: list[str], question: str, model: Path, flags: list[str], cache: Path, home: Path) -> list[dict]:
    """`forestprune ask VIDEO... QUESTION --json` with `flags`: one result per video."""
    command = [sys.executable, "-m", "fpcli", "ask", *videos, question, "--model", str(model), "--frames",
               str(FRAMES), "--max-new-tokens", str(VIDEO_MAX_NEW_TOKENS), "--json", *flags]
    done = subprocess.run(command, cwd=ROOT, env=_env(cache, home), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def questions() -> list[dict]:
    return [json.loads(line) for line in (TASK_DIR / "videoqa.jsonl").read_text().splitlines()]


RUNS = {
    # LLaVA-OneVision with a ratio and a method option; Qwen2.5-VL with a budget of visual tokens
    "llava": ("tiny_onevision_dir", f"method=forestprune,ratio=0.5,frames={FRAMES},tau_s=0.85"),
    "qwen": ("tiny_qwen25_dir", f"method=forestprune,budget=5,frames={FRAMES}"),
}


@pytest.fixture(scope="module", params=sorted(RUNS))
def lmms_run(request, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One lmms-eval run of both local tasks with a tiny checkpoint, and `forestprune ask` on the same videos
    afterwards (same feature cache: lmms-eval's encodings must be what ask looks up)."""
    fixture, args = RUNS[request.param]
    model = request.getfixturevalue(fixture)
    out, cache = tmp_path_factory.mktemp("lmms-out"), tmp_path_factory.mktemp("lmms-cache")
    done = run_lmms_eval(f"pretrained={model},{args}", out, cache)
    assert done.returncode == 0, done.stderr[-3000:]
    videoqa, imageqa = samples(out, "fp_videoqa"), samples(out, "fp_imageqa")
    return {"name": request.param, "model": model, "args": args, "out": out, "cache": cache, "done": done,
            "videoqa": videoqa, "imageqa": imageqa}


def test_every_request_is_answered_with_token_counts(lmms_run: dict) -> None:
    docs = questions()
    assert [s["doc_id"] for s in lmms_run["videoqa"]] == [d["id"] for d in docs]
    assert len(lmms_run["imageqa"]) == 1
    for sample in [*lmms_run["videoqa"], *lmms_run["imageqa"]]:
        (counts,) = sample["token_counts"]
        assert counts["output_tokens"] >= 1
        assert 1 <= counts["visual_after"] <= counts["visual_before"]
        assert counts["visual_after"] < counts["input_tokens"]  # the prompt entering the LLM holds the kept tokens
    if lmms_run["name"] == "qwen":  # budget=5: five visual tokens kept of every clip
        assert {s["token_counts"][0]["visual_after"] for s in lmms_run["videoqa"]} == {5}
    else:  # ratio 0.5 of 4 frames of 8x8 tokens
        assert {(s["token_counts"][0]["visual_before"], s["token_counts"][0]["visual_after"])
                for s in lmms_run["videoqa"]} == {(256, 128)}
    assert "forestprune: 6 requests" in lmms_run["done"].stderr


def test_each_video_is_encoded_once(lmms_run: dict) -> None:
    """Five questions about three videos and one picture: four encodings, four prefix prefills, nothing failed."""
    assert ("6 requests, 4 visuals, 4 encoded (0 from the feature cache), 4 prefix prefills, 0 failed"
            in lmms_run["done"].stderr)


def test_answers_are_forestprune_ask_answers_cut_at_until(lmms_run: dict) -> None:
    """Each answer is `forestprune ask VIDEO "<text>"`'s with the same settings, cut at the first `until` string;
    ask finds every clip in the feature cache the lmms-eval run filled (the same sampling, the same key)."""
    home = lmms_run["out"] / "hf"
    by_question: dict[str, list[dict]] = {}
    for doc in questions():
        by_question.setdefault(doc["question"], []).append(doc)
    logged = {s["doc_id"]: s for s in lmms_run["videoqa"]}
    for question, docs in by_question.items():
        if lmms_run["name"] == "qwen":
            flags = ["--method", "forestprune", "--budget", "5"]
        else:
            flags = ["--method", "forestprune", "--ratio", "0.5", "--opt", "tau_s=0.85"]
        results = ask([str(VIDEOS / d["video"]) for d in docs], question, lmms_run["model"], flags,
                      lmms_run["cache"], home)
        for doc, result in zip(docs, results):
            assert result["cache"] == "hit"
            assert result["tokens"]["visual_after"] == logged[doc["id"]]["token_counts"][0]["visual_after"]
            expected = result["answer"].split(VIDEO_UNTIL)[0]
            assert logged[doc["id"]]["filtered_resps"] == expected, (doc, result["answer"])


def test_a_bad_model_arg_is_reported_in_one_line(tiny_onevision_dir: Path, tmp_path: Path) -> None:
    """lmms-eval logs a model's construction error and exits 0 itself: our line is what the user sees."""
    done = run_lmms_eval(f"pretrained={tiny_onevision_dir},method=forestprune,tau_s=3", tmp_path, tmp_path / "c",
                         tasks="fp_videoqa")
    output = done.stdout + done.stderr
    assert "forestprune --model_args: tau_s must be a number in [-1, 1], got 3.0" in output
    assert "forestprune: loaded" not in done.stderr  # checked before the model loads


def test_cut_at_stop_cuts_at_the_earliest_until_string() -> None:
    from fpcli.lmms.model import cut_at_stop

    assert cut_at_stop("B. a dog\n\nC.", ["\n\n", "."]) == "B"
    assert cut_at_stop("B. a dog", ["\n"]) == "B. a dog"
    assert cut_at_stop("abc", ["", "c"]) == "ab"  # an empty stop string stops nothing


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"max_new_tokens": 16, "temperature": 0, "top_p": 1.0, "num_beams": 1, "do_sample": False}, (16, 0.0)),
    ({"max_new_tokens": 16, "temperature": 0.7, "do_sample": False}, (16, 0.0)),  # greedy: do_sample decides
    ({"temperature": 0.7, "do_sample": True}, (128, 0.7)),  # no max_new_tokens: ask's default
    ({"do_sample": True}, (128, 1.0)),  # sampling without a temperature: HF generate's 1.0
])
def test_generation_kwargs_map_to_ours(kwargs: dict, expected: tuple) -> None:
    from fpcli.lmms.args import parse_model_args
    from fpcli.lmms.model import generation_config

    config = generation_config(kwargs, parse_model_args({"pretrained": "m"}).run)
    assert (config.max_new_tokens, config.temperature, config.seed) == (*expected, 0)


def test_loglikelihood_is_refused_in_words(tiny_onevision_dir: Path) -> None:
    from fpcli.lmms.model import Forestprune

    model = Forestprune(pretrained=str(tiny_onevision_dir), frames=2)
    with pytest.raises(NotImplementedError, match="generate_until tasks only; loglikelihood"):
        model.loglikelihood([])


def test_a_method_the_family_cannot_run_is_refused_before_loading(tiny_qwen25_dir: Path, capsys) -> None:
    from fpcli.lmms.args import ModelArgsError
    from fpcli.lmms.model import Forestprune

    with pytest.raises(ModelArgsError, match="visionzip needs the vision tower's vision attention, which the "
                                             "qwen2.5-vl layout's encoder does not provide"):
        Forestprune(pretrained=str(tiny_qwen25_dir), method="visionzip")
    assert "forestprune: loaded" not in capsys.readouterr().err
