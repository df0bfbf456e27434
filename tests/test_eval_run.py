"""Run directories: plan, fsynced predictions, resume, shards + merge = one run, missing videos."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
from fixtures_eval import link_video, make_mvbench, make_videomme

from fpcli.eval import (
    EvalInputError, RunDir, RunInfo, get_protocol, load_bench, parse_response, parse_shard, plan_run,
    prediction_key, prediction_record, shard_items, summarize, write_summary,
)
from fpcli.eval.items import make_item
from fpcli.eval.plan import settings_of
from fpcli.eval.rundir import MISSING_VIDEO, PREDICTIONS, failure_records

METHODS, RATIOS = ["none", "forestprune", "gprune"], [0.7, 0.9]


def _items(tmp_path: Path, videos: int = 5, per_video: int = 3):
    items = []
    for v in range(videos):
        video = tmp_path / f"v{v}.mp4"
        if v != 3:  # video 3 is missing
            link_video(video)
        for q in range(per_video):
            items.append(make_item(id=f"v{v}q{q}", bench="jsonl", video=video, question=f"Q{q}?",
                                   options=["x", "y", "z"], answer="ABC"[(v + q) % 3], source="t"))
    return items


def _response(item, method: str, ratio: float) -> str:
    """A deterministic fake model: right about 2 times in 3, sometimes empty."""
    h = zlib.crc32(f"{item.id}/{method}/{ratio}".encode()) % 6
    return "" if h == 0 else f"({item.answer})" if h < 5 else "The answer is A."


def _run(items, run_dir: Path, protocol: str = "paper", shard: str | None = None, stop_after: int | None = None) -> int:
    """What the model loop does, with `_response` for the model; returns the predictions written."""
    bp = get_protocol(protocol).for_bench("jsonl")
    written = 0
    with RunDir(run_dir, RunInfo("jsonl", protocol, "tiny", "video", shard)) as run:
        plan = plan_run(items, METHODS, RATIOS, done=run.done)
        for group in plan.groups:
            if not group.video.is_file():
                records = list(failure_records(group.sessions, "file not found", MISSING_VIDEO))
                for record in records:
                    run.append(record)
                assert len(records) == group.questions
                continue
            run.count(videos_encoded=1)
            for session in group.sessions:
                run.count(prefills=1)
                for item in session.items:
                    if stop_after is not None and written == stop_after:
                        return written
                    response = _response(item, session.method, session.ratio)
                    parsed = parse_response(item, bp, response, method=session.method, ratio=session.ratio)
                    run.append(prediction_record(item, session.method, session.ratio, response, parsed,
                                                 tokens={"visual": 10}, timing_s={"prefill": 0.5}))
                    run.count(questions=1)
                    written += 1
    return written


def test_settings_and_plan(tmp_path: Path) -> None:
    assert settings_of(METHODS, RATIOS) == [
        ("none", 0.0), ("forestprune", 0.7), ("forestprune", 0.9), ("gprune", 0.7), ("gprune", 0.9)]
    items = _items(tmp_path)
    plan = plan_run(items, METHODS, RATIOS)
    assert (plan.encodes, plan.sessions, plan.questions) == (5, 25, 75)  # one encode per video, none once
    assert [len(s.items) for s in plan.groups[0].sessions] == [3] * 5
    done = {prediction_key("jsonl", "v0q0", "none", 0.0), prediction_key("jsonl", "v0q1", "gprune", 0.9)}
    resumed = plan_run(items, METHODS, RATIOS, done=done)
    assert resumed.questions == 73 and [len(s.items) for s in resumed.groups[0].sessions] == [2, 3, 3, 3, 2]


@pytest.mark.parametrize(("methods", "ratios", "message"), [
    ([], [0.9], "give at least one method"),
    (["none", "none"], [0.9], "methods are listed twice: none,none"),
    (["forestprune"], [], "give at least one ratio for the pruning methods"),
    (["forestprune"], [1.0], "ratios must be numbers in [0, 1), got 1.0"),
    (["forestprune"], [0.5, 0.5], "ratios are listed twice"),
])
def test_settings_errors(methods, ratios, message) -> None:
    with pytest.raises(EvalInputError) as err:
        settings_of(methods, ratios)
    assert str(err.value) == message


def test_mvbench_groups_by_time_bound(tmp_path: Path) -> None:
    items = load_bench("mvbench", make_mvbench(tmp_path))
    bounded = items[0]
    twin = make_item(id="twin", bench="mvbench", video=bounded.video, question="q", options=["a", "b"], answer="A",
                     source="t", time_bound=(0.0, 1.0))
    plan = plan_run([bounded, twin], ["none"], [], use_time_bound=True)
    assert [(g.video, g.time_bound) for g in plan.groups] == [(bounded.video, (2.0, 6.5)), (bounded.video, (0.0, 1.0))]
    assert plan_run([bounded, twin], ["none"], [], use_time_bound=False).encodes == 1


def test_resume_after_interruption(tmp_path: Path) -> None:
    items = _items(tmp_path / "videos")
    run_dir = tmp_path / "run"
    assert _run(items, run_dir, stop_after=7) == 7  # interrupted inside the first video's third session
    assert len((run_dir / PREDICTIONS).read_text().splitlines()) == 7
    with (run_dir / PREDICTIONS).open("a") as f:
        f.write('{"bench": "jsonl", "id": "v0q')  # a hard crash mid-write
    with RunDir(run_dir, RunInfo("jsonl", "paper", "tiny", "video")) as run:
        assert (run.log.truncated, len(run.done)) == (True, 7)
    assert _run(items, run_dir) == 60 - 7  # 4 readable videos x 15 predictions; the 7 done are not asked again
    records = [json.loads(line) for line in (run_dir / PREDICTIONS).read_text().splitlines()]
    keys = [(r["id"], r["method"], r["ratio"]) for r in records]
    assert len(keys) == len(set(keys)) == 75 and sum(r["status"] == "error" for r in records) == 15
    assert set(records[0]) >= {"id", "bench", "category", "video", "method", "ratio", "response", "parsed", "fallback",
                               "answer", "correct", "tokens", "timing_s"}
    with RunDir(run_dir, RunInfo("jsonl", "paper", "tiny", "video")) as run:
        assert (run.log.truncated, run.log.retrying, len(run.done)) == (False, 15, 60)  # failures are retried
        assert plan_run(items, METHODS, RATIOS, done=run.done).questions == 15
    assert len((run_dir / PREDICTIONS).read_text().splitlines()) == 60
    info = json.loads((run_dir / "run.json").read_text())
    assert (info["videos_encoded"], info["questions"]) == (5, 60)  # video 0 was encoded twice (interrupted)


def test_run_dir_refuses_another_run(tmp_path: Path) -> None:
    RunDir(tmp_path, RunInfo("jsonl", "paper", "tiny", "video")).close()
    with pytest.raises(EvalInputError, match=r"^holds another run \(jsonl, paper, tiny, shard None\); give a new"):
        RunDir(tmp_path, RunInfo("jsonl", "lmms-eval", "tiny", "video"))


def test_shards_merge_to_one_run(tmp_path: Path) -> None:
    items = _items(tmp_path / "videos")
    _run(items, tmp_path / "full")
    for i in (1, 2, 3):
        _run(shard_items(items, parse_shard(f"{i}/3")), tmp_path / f"s{i}", shard=f"{i}/3")
    whole = summarize([tmp_path / "full"])
    merged = summarize([tmp_path / f"s{i}" for i in (1, 2, 3)])
    assert merged.groups == whole.groups and merged.table1 == whole.table1
    assert (merged.videos_encoded, merged.prefills, merged.questions) == (whole.videos_encoded, whole.prefills,
                                                                         whole.questions) == (4, 20, 60)
    assert merged.missing_videos == whole.missing_videos == [str(tmp_path / "videos" / "v3.mp4")]
    assert whole.failed == 15
    none = whole.groups[0]
    assert (none.method, none.n, none.failed) == ("none", 12, 3)
    write_summary(tmp_path / "full" / "summary.json", whole)
    saved = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert saved["groups"][0]["n"] == 12 and saved["table1"]["benches"] == ["jsonl"]
    assert saved["missing_videos"] == whole.missing_videos
    assert saved["settings"]["jsonl"]["post_prompt"].startswith("\nPlease answer directly")


def test_shard_split(tmp_path: Path) -> None:
    items = _items(tmp_path, videos=7, per_video=2)
    parts = [shard_items(items, parse_shard(f"{i}/3")) for i in (1, 2, 3)]
    assert sorted(i.id for p in parts for i in p) == sorted(i.id for i in items)
    videos = [{i.video for i in p} for p in parts]
    assert [len(v) for v in videos] == [3, 2, 2] and not (videos[0] & videos[1] or videos[1] & videos[2])
    assert shard_items(list(reversed(items)), parse_shard("2/3")) == list(reversed(parts[1]))
    for bad in ("0/3", "4/3", "1", "a/b", "1/0"):
        with pytest.raises(EvalInputError, match=r"^shard must be I/N with 1 <= I <= N \(e.g. 1/4\)"):
            parse_shard(bad)


def test_merge_errors(tmp_path: Path) -> None:
    with pytest.raises(EvalInputError, match=r"^is not a run directory \(no run.json\)"):
        summarize([tmp_path])
    RunDir(tmp_path / "a", RunInfo("jsonl", "paper", "tiny", "video")).close()
    RunDir(tmp_path / "b", RunInfo("videomme", "lmms-eval", "tiny", "video")).close()
    with pytest.raises(EvalInputError, match=r"^was run with lmms-eval/tiny, not paper/tiny"):
        summarize([tmp_path / "a", tmp_path / "b"])


def test_benches_merge_into_table1(tmp_path: Path) -> None:
    _run(_items(tmp_path / "videos"), tmp_path / "jsonl")
    items = load_bench("videomme", make_videomme(tmp_path / "vm"))
    with RunDir(tmp_path / "videomme", RunInfo("videomme", "paper", "tiny", "video")) as run:
        for item in items[:2]:
            bp = get_protocol("paper").for_bench("videomme")
            parsed = parse_response(item, bp, item.answer, method="none", ratio=0)
            run.append(prediction_record(item, "none", 0, item.answer, parsed, tokens={}, timing_s={}))
    table = summarize([tmp_path / "jsonl", tmp_path / "videomme"]).table1
    assert table.benches == ["videomme", "jsonl"]
    assert table.rows[0].cells["videomme"].accuracy == 100.0 and table.rows[1].cells["videomme"].accuracy is None


def test_work_items_rebuild_their_groups_and_any_suffix(tmp_path: Path):
    from fpcli.eval import group_of, work_items

    plan = plan_run(_items(tmp_path, videos=2), METHODS, RATIOS)
    items = work_items(plan.groups)
    assert len(items) == plan.questions == 2 * 3 * 5
    assert len({w.ident for w in items}) == len(items) and len({w.video_key for w in items}) == 2
    first = [w for w in items if w.video == plan.groups[0].video]
    assert group_of(first) == plan.groups[0]
    rest = group_of(first[4:])  # what a worker that died after 4 records leaves: the same questions, in order
    assert [(s.method, s.ratio, [i.id for i in s.items]) for s in rest.sessions] == [
        ("forestprune", 0.7, ["v0q1", "v0q2"]), ("forestprune", 0.9, ["v0q0", "v0q1", "v0q2"]),
        ("gprune", 0.7, ["v0q0", "v0q1", "v0q2"]), ("gprune", 0.9, ["v0q0", "v0q1", "v0q2"])]
    with pytest.raises(ValueError, match="one video, time bound and frame count"):
        group_of(items)
    assert first[0].failed("boom")["error"] == "boom" and first[0].failed("boom")["status"] == "error"
