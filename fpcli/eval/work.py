"""A plan's pending predictions as independent work items, for an executor that spreads them over workers.

    items = work_items(groups)              # one per (question, method, ratio), group by group, session by session
    group = group_of(items_of_one_video)    # back to one VideoGroup: what `VideoRunner` runs (one decode + encode)

An executor (the CLI's Ray path, fpcli.cli.on_ray) keeps the items of one video together (`WorkItem.video_key`) and
in order, so a worker rebuilds the group, runs it with `fpcli.eval.loop.VideoRunner` and returns one record per
item, in the same order; a worker lost half-way leaves a suffix of its items, which is again a group.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fpcli.eval.items import EvalItem
from fpcli.eval.plan import Session, VideoGroup
from fpcli.eval.rundir import failure_record


@dataclass(frozen=True)
class WorkItem:
    """One pending prediction of a run: `item` asked with (`method`, `ratio` or `budget`) on its group's video and
    bound (at `frames`, a frames sweep's count)."""

    video: Path
    time_bound: tuple[float, float] | None
    method: str
    ratio: float | None
    item: EvalItem
    budget: int | None = None
    frames: int | None = None

    @property
    def video_key(self) -> str:
        """The same for every item of one group (one decode and encode)."""
        key = str(self.video)
        if self.time_bound is not None:
            key += f"@{self.time_bound[0]:g}-{self.time_bound[1]:g}"
        return key if self.frames is None else f"{key}#{self.frames}f"

    @property
    def ident(self) -> str:
        """Unique in a run: its prediction's key."""
        amount = f"{self.ratio:g}" if self.budget is None else f"budget{self.budget}"
        frames = "" if self.frames is None else f"/{self.frames}f"
        return f"{self.item.bench}/{self.item.id}/{self.method}/{amount}{frames}"

    def failed(self, error: str) -> dict[str, Any]:
        """Its predictions.jsonl line when it could not run (retried on resume)."""
        return failure_record(self.item, self.method, self.ratio, error, budget=self.budget, frames=self.frames)


def work_items(groups: Iterable[VideoGroup]) -> list[WorkItem]:
    """Every pending prediction of `groups`, in the order `run_video` answers them."""
    return [WorkItem(group.video, group.time_bound, session.method, session.ratio, item, session.budget, group.frames)
            for group in groups for session in group.sessions for item in session.items]


def group_of(items: Sequence[WorkItem]) -> VideoGroup:
    """The VideoGroup of items that share one video, bound and frame count: consecutive items of one (method, ratio
    or budget) make a session, so `run_video` over it yields their records in the items' order."""
    if not items or len({item.video_key for item in items}) != 1:
        raise ValueError("a group needs items of one video, time bound and frame count")
    sessions: list[Session] = []
    for work in items:
        last = sessions[-1] if sessions else None
        if last is not None and (last.method, last.ratio, last.budget) == (work.method, work.ratio, work.budget):
            sessions[-1] = Session(last.method, last.ratio, last.items + (work.item,), last.budget, last.frames)
        else:
            sessions.append(Session(work.method, work.ratio, (work.item,), work.budget, work.frames))
    return VideoGroup(items[0].video, items[0].time_bound, tuple(sessions), items[0].frames)
