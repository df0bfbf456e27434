"""The fsynced JSONL log: appends survive, torn tails and junk are repaired, failures retried, duplicates dropped."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from fpcli.eval import parse_shard, shard_items
from fpcli.eval.items import make_item
from fpcli.jsonl import JsonlLog


def _open(path: Path) -> JsonlLog:
    return JsonlLog(path, lambda r: r.get("id"), lambda r: r.get("status") == "ok")


def test_recovery(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "log.jsonl"
    with _open(path) as log:
        assert (log.done, log.truncated, log.unreadable, log.retrying) == ({}, False, 0, 0)
        log.append({"id": "a", "status": "ok", "text": "é"})
        log.append({"id": "b", "status": "error"})
        log.append({"id": "a", "status": "ok", "text": "second"})
    with path.open("a", encoding="utf-8") as f:
        f.write("[1, 2]\nnot json\n")
        f.write('{"id": "c", "sta')
    with _open(path) as log:
        assert (log.truncated, log.unreadable, log.retrying) == (True, 2, 1)
        assert log.done == {"a": {"id": "a", "status": "ok", "text": "é"}}
        log.append({"id": "b", "status": "ok"})
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines == [{"id": "a", "status": "ok", "text": "é"}, {"id": "b", "status": "ok"}]
    assert not (tmp_path / "deep" / "log.jsonl.tmp").exists()


@given(st.lists(st.integers(0, 30), min_size=1, max_size=60), st.integers(1, 6))
def test_shards_partition_by_video(videos: list[int], count: int) -> None:
    items = [make_item(id=f"q{i}", bench="jsonl", video=Path(f"/v/{v}.mp4"), question="?", options=["a"], answer="A",
                       source="t") for i, v in enumerate(videos)]
    parts = [shard_items(items, parse_shard(f"{i}/{count}")) for i in range(1, count + 1)]
    assert sorted(i.id for p in parts for i in p) == sorted(i.id for i in items)
    per_shard = [{i.video for i in p} for p in parts]
    assert sum(len(v) for v in per_shard) == len(set(videos))  # no video in two shards
    assert max(map(len, per_shard)) - min(map(len, per_shard)) <= 1  # balanced in videos
