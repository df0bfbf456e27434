"""The eval model loop on tiny checkpoints: answers equal separate `answer` calls token for token, the vision tower
runs once per video, prefills once per video x setting, resume does nothing twice, shards + merge = one run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_eval import link_video, make_jsonl

from fpcli.eval import EvalRequest, Shard, build_prompt, merge_runs, prepare_eval, run_eval, shard_items
from fpcli.eval.plan import settings_of
from fpcli.eval.rundir import PREDICTIONS, RUN
from fpcli.model import GenerationConfig, load_model
from fpcli.model.llava.model import LlavaVideoLLM
from fpcli.model.llava.session import ClipSession
from fpcli.video import sample_frames

METHODS, RATIOS = ("none", "forestprune", "uniform"), (0.5, 0.8)
SETTINGS = settings_of(list(METHODS), list(RATIOS))  # 5: none once, 2 methods x 2 ratios
FRAMES, TOKENS = 3, 5


def rows(videos: list[str], per_video: int = 3) -> list[dict]:
    return [{"id": f"{v}-{q}", "video": f"clips/{v}.mp4", "question": f"Question {q} about {v}?",
             "options": ["red", "green", "blue"], "answer": q % 3, "category": f"c{q % 2}"}
            for v in videos for q in range(per_video)]


def bench(root: Path, videos: list[str], present: list[str] | None = None) -> Path:
    """A jsonl benchmark of 3 questions per video; `present` videos are linked (default: all)."""
    path = make_jsonl(root, rows(videos))
    for name in videos if present is None else present:
        if not (root / "clips" / f"{name}.mp4").exists():
            link_video(root / "clips" / f"{name}.mp4", "scene_returns.mp4")
    return path


class Held:
    """A ModelSource over a loaded model, counting how often the run asked for it."""

    def __init__(self, llm: LlavaVideoLLM) -> None:
        self.llm, self.gets = llm, 0

    @property
    def spec(self) -> str:
        return "tiny"

    @property
    def layout(self) -> str:
        return self.llm.layout

    def get(self) -> LlavaVideoLLM:
        self.gets += 1
        return self.llm


@pytest.fixture(scope="module", params=["onevision", "video"])
def llm(request, tiny_onevision_dir, tiny_video_dir) -> LlavaVideoLLM:
    return load_model(tiny_onevision_dir if request.param == "onevision" else tiny_video_dir, device="cpu")


@pytest.fixture
def spies(monkeypatch):
    """Every ClipSession.ask (question, keywords, generation, generated ids) and every vision-tower pass."""
    calls = {"ask": [], "encode": 0}
    ask, encode = ClipSession.ask, LlavaVideoLLM.encode

    def spy_ask(self, question, generation, **kw):
        result = ask(self, question, generation, **kw)
        calls["ask"].append((self.pruned.method, float(self.pruned.ratio), question, kw, generation,
                             result.generated_ids))
        return result

    def spy_encode(self, frames, *args, **kw):
        calls["encode"] += 1
        return encode(self, frames, *args, **kw)

    monkeypatch.setattr(ClipSession, "ask", spy_ask)
    monkeypatch.setattr(LlavaVideoLLM, "encode", spy_encode)
    return calls


def request(data: Path, out: Path, protocol: str = "paper", **kw) -> EvalRequest:
    return EvalRequest("jsonl", data, out, protocol=protocol, methods=METHODS, ratios=RATIOS, frames=FRAMES,
                       max_new_tokens=TOKENS, **kw)


def predictions(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / PREDICTIONS).read_text().splitlines()]


@pytest.mark.parametrize("protocol", ["paper", "lmms-eval"])
def test_eval_answers_are_separate_answers_token_for_token(llm, spies, tmp_path: Path, protocol: str):
    data = bench(tmp_path / "b", ["one", "two"])
    prepared = prepare_eval(request(data, tmp_path / "run", protocol))
    outcome = run_eval(prepared, Held(llm))
    bp = prepared.bench_protocol
    assert spies["encode"] == 2  # the vision tower once per video, not per question or setting
    assert (outcome.summary.videos_encoded, outcome.summary.prefills, outcome.summary.questions) == (2, 10, 30)
    assert outcome.complete and (outcome.answered, outcome.failed) == (30, 0)
    asked = spies["ask"][:]
    assert len(asked) == 30
    for _, _, _, kw, generation, _ in asked:  # the protocol's prompt settings, greedy at its length (overridden)
        assert kw == {"time_instruction": bp.time_instruction, "system_prompt": bp.system_prompt}
        assert (generation.max_new_tokens, generation.temperature) == (TOKENS, 0.0)
    by_key = {(r["id"], r["method"], r["ratio"]): r for r in predictions(tmp_path / "run")}
    ids = {(m, r, q): g for m, r, q, _, _, g in asked}
    for item in prepared.items:
        clip = sample_frames(item.video, **bp.sampling(llm.layout, frames=FRAMES))
        prompt = build_prompt(item, bp, llm.layout)
        for method, ratio in SETTINGS:
            fresh = llm.answer(clip, prompt, ratio=ratio, method=method, prune_options=bp.prune_options.get(method),
                               generation=GenerationConfig(max_new_tokens=TOKENS, temperature=0.0),
                               time_instruction=bp.time_instruction, system_prompt=bp.system_prompt)
            assert ids[(method, ratio, prompt)] == fresh.generated_ids
            assert by_key[(item.id, method, ratio)]["response"] == fresh.answer


def test_timings_add_up_to_what_each_video_cost(llm, tmp_path: Path):
    data = bench(tmp_path / "b", ["one"])
    run_eval(prepare_eval(request(data, tmp_path / "run")), Held(llm))
    records = predictions(tmp_path / "run")
    assert sum(r["timing_s"]["encode"] > 0 for r in records) == 1  # paid once, on the video's first record
    assert sum(r["timing_s"]["prune"] > 0 for r in records) == len(SETTINGS)  # once per session
    assert all(r["tokens"]["generated"] <= TOKENS for r in records)


def test_missing_videos_fail_without_loading_the_model(llm, spies, tmp_path: Path):
    data = bench(tmp_path / "b", ["gone", "also-gone"], present=[])
    held = Held(llm)
    outcome = run_eval(prepare_eval(request(data, tmp_path / "run")), held)
    assert held.gets == 0 and spies["encode"] == 0
    assert not outcome.complete and (outcome.answered, outcome.failed) == (0, 30)
    assert outcome.summary.missing_videos == [str(tmp_path / "b" / "clips" / f"{v}.mp4") for v in ("also-gone", "gone")]
    assert {r["kind"] for r in predictions(tmp_path / "run")} == {"missing_video"}


def test_a_broken_video_is_recorded_and_the_run_goes_on(llm, tmp_path: Path):
    data = bench(tmp_path / "b", ["broken", "fine"], present=["fine"])
    (tmp_path / "b" / "clips" / "broken.mp4").write_bytes(b"not a video at all")
    outcome = run_eval(prepare_eval(request(data, tmp_path / "run")), Held(llm))
    assert (outcome.answered, outcome.failed) == (15, 15)
    assert outcome.summary.broken_videos == [str(tmp_path / "b" / "clips" / "broken.mp4")]
    failed = [r for r in predictions(tmp_path / "run") if r["status"] != "ok"]
    assert {r["kind"] for r in failed} == {"broken_video"} and all("broken.mp4" in r["error"] for r in failed)


def test_resume_after_an_interruption_does_nothing_twice(llm, spies, tmp_path: Path):
    data = bench(tmp_path / "b", ["late", "one", "two"], present=["one", "two"])
    prepared = prepare_eval(request(data, tmp_path / "run"))
    seen = []

    def stop_after_18(record):  # 15 failures of the missing video, then 3 answers
        seen.append(record)
        if len(seen) == 18:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_eval(prepared, Held(llm), on_record=stop_after_18)
    assert len(spies["ask"]) == 3 and len(predictions(tmp_path / "run")) == 18
    link_video(tmp_path / "b" / "clips" / "late.mp4", "moving_object.mp4")  # the failures are retried
    outcome = run_eval(prepared, Held(llm))
    assert len(spies["ask"]) == 45  # 42 asked now: nothing twice
    assert (outcome.already_done, outcome.answered, outcome.failed) == (3, 42, 0)
    records = predictions(tmp_path / "run")
    assert len(records) == 45 and all(r["status"] == "ok" for r in records)
    assert len({(r["id"], r["method"], r["ratio"]) for r in records}) == 45
    info = json.loads((tmp_path / "run" / RUN).read_text())
    assert (info["questions"], info["videos_encoded"]) == (45, 4)  # "one" is encoded again for its other settings
    assert info["prefills"] == 1 + 14  # the first run's `none` session on "one", then the 14 sessions left
    assert outcome.complete


def test_shards_and_merge_make_one_run(llm, tmp_path: Path):
    data = bench(tmp_path / "b", ["a", "b", "c"])
    whole = run_eval(prepare_eval(request(data, tmp_path / "whole")), Held(llm)).summary
    parts = []
    for index in (1, 2):
        prepared = prepare_eval(request(data, tmp_path / f"shard{index}", shard=f"{index}/2"))
        assert prepared.items == shard_items(prepare_eval(request(data, tmp_path / "x")).items, Shard(index, 2))
        run_eval(prepared, Held(llm))
        parts.append(tmp_path / f"shard{index}")
    merged = merge_runs(parts, tmp_path / "merged")
    assert merged.table1 == whole.table1
    assert [(g.bench, g.method, g.ratio, g.n, g.correct, g.accuracy) for g in merged.groups] == \
        [(g.bench, g.method, g.ratio, g.n, g.correct, g.accuracy) for g in whole.groups]
    assert (merged.videos_encoded, merged.prefills, merged.questions) == (3, 15, 45)
    assert json.loads((tmp_path / "merged" / "summary.json").read_text())["questions"] == 45
    key = lambda r: (r["id"], r["method"], r["ratio"], r["response"])  # noqa: E731
    assert sorted(map(key, predictions(parts[0]) + predictions(parts[1]))) == \
        sorted(map(key, predictions(tmp_path / "whole")))
