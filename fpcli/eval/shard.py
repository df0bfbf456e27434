"""--shard I/N: a deterministic split of a benchmark by video, so shards never share a video."""

from __future__ import annotations

from dataclasses import dataclass

from fpcli.eval.errors import EvalInputError
from fpcli.eval.items import EvalItem


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based: shard 1/4 .. 4/4
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """'2/4' -> Shard(2, 4); anything else is bad input."""
    parts = text.split("/")
    if len(parts) == 2 and all(part.strip().isdigit() for part in parts):
        index, count = (int(part) for part in parts)
        if 1 <= index <= count:
            return Shard(index, count)
    raise EvalInputError(f"shard must be I/N with 1 <= I <= N (e.g. 1/4), got {text!r}")


def shard_items(items: list[EvalItem], shard: Shard | None) -> list[EvalItem]:
    """The items of `shard`: distinct videos in sorted path order are dealt round-robin, so the
    shards are balanced in videos and the same however the items are ordered. File order is kept."""
    if shard is None:
        return list(items)
    videos = sorted({str(item.video) for item in items})
    mine = {video for i, video in enumerate(videos) if i % shard.count == shard.index - 1}
    return [item for item in items if str(item.video) in mine]
