"""The run plan: which videos to encode, which sessions to start, which questions to ask.

The model loop (later, on modelcore's API) walks it as:

    for group in plan:                                  # one decode + vision-tower pass per group
        clip = sample_frames(group.video, **bench_protocol.sampling(layout, *(group.time_bound or (None, None))))
        features = llm.encode_clip(clip)
        for session in group.sessions:                  # one pruning + prefix prefill per session
            s = llm.start(features, ratio=session.ratio, method=session.method,
                          options=bench_protocol.prune_options.get(session.method))
            for item in session.items:                  # every pending question about this video
                answer = s.ask(build_prompt(item, bench_protocol, layout), generation,
                               time_instruction=bench_protocol.time_instruction)

A missing video is not decoded: each of its pending (item, method, ratio) gets a failure record.
`none` has one session per group whatever the ratios (ratio 0). Finished predictions are left out,
so a resumed run asks only what is left (failures are asked again).

A session may keep a budget of visual tokens instead of a ratio (`--budgets`: ratio None), and a frames sweep
(`--frames` with several values) makes one group per frame count of each video (`VideoGroup.frames`; `none` only
at the first, the reference). A run with one frame count leaves `frames` None (the runner's value).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from fpcli.eval.errors import EvalInputError
from fpcli.eval.items import EvalItem
from fpcli.eval.scoring import REFERENCE

PredictionKey = tuple  # bench, item id, method, ratio (None with a budget), budget, frames (a sweep's, else None)


def prediction_key(bench: str, item_id: str, method: str, ratio: float | None, budget: int | None = None,
                   frames: int | None = None) -> PredictionKey:
    if method == REFERENCE:
        return (bench, item_id, method, 0.0, None, frames)
    return (bench, item_id, method, None if budget is not None else float(ratio), budget, frames)


@dataclass(frozen=True)
class Setting:
    """One pruning setting of a run: a method at a ratio or keeping a budget, at a frame count of a sweep."""

    method: str
    ratio: float | None  # None: `budget` visual tokens instead
    budget: int | None = None
    frames: int | None = None  # a frames sweep's value; None: the run's one frame count


@dataclass(frozen=True)
class Session:
    method: str
    ratio: float | None  # None: keeps `budget` visual tokens
    items: tuple[EvalItem, ...]
    budget: int | None = None
    frames: int | None = None


@dataclass(frozen=True)
class VideoGroup:
    video: Path
    time_bound: tuple[float, float] | None  # frames are sampled inside it (protocols with time bounds)
    sessions: tuple[Session, ...]
    frames: int | None = None  # a frames sweep's frame count for every session of the group (None: the run's)

    @property
    def questions(self) -> int:
        return sum(len(s.items) for s in self.sessions)


@dataclass(frozen=True)
class RunPlan:
    groups: tuple[VideoGroup, ...]

    @property
    def encodes(self) -> int:
        return len(self.groups)

    @property
    def sessions(self) -> int:
        return sum(len(g.sessions) for g in self.groups)

    @property
    def questions(self) -> int:
        return sum(g.questions for g in self.groups)


def settings_of(methods: list[str], ratios: list[float]) -> list[tuple[str, float]]:
    """(method, ratio) pairs in order: `none` once at ratio 0, every other method at every ratio."""
    if not methods:
        raise EvalInputError("give at least one method")
    if len(set(methods)) != len(methods):
        raise EvalInputError(f"methods are listed twice: {','.join(methods)}")
    pruning = [m for m in methods if m != REFERENCE]
    if pruning and not ratios:
        raise EvalInputError("give at least one ratio for the pruning methods")
    for ratio in ratios:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
            raise EvalInputError(f"ratios must be numbers in [0, 1), got {ratio!r}")
    if len(set(ratios)) != len(ratios):
        raise EvalInputError("ratios are listed twice")
    pairs = []
    for method in methods:
        pairs += [(method, 0.0)] if method == REFERENCE else [(method, float(r)) for r in ratios]
    return pairs


def sweep_of(methods: list[str], ratios: list[float], budgets: Sequence[int] = (),
             frames: Sequence[int | None] = (None,)) -> list[Setting]:
    """Every setting of a run in order: per frame count, `none` once at ratio 0 (at the first frame count only: the
    reference), every other method at every ratio, or at every budget (ratios and budgets are exclusive)."""
    if budgets and ratios:
        raise EvalInputError("give ratios or budgets, not both")
    for budget in budgets:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise EvalInputError(f"budgets must be integers >= 1, got {budget!r}")
    if len(set(budgets)) != len(budgets):
        raise EvalInputError("budgets are listed twice")
    if len(set(frames)) != len(frames):
        raise EvalInputError("frame counts are listed twice")
    if budgets:
        settings_of(methods, [0.0])  # the methods' checks (0, a ratio that every method takes)
        amounts = [(None, budget) for budget in budgets]
    else:
        settings_of(methods, ratios)  # the methods' and the ratios' checks
        amounts = [(float(ratio), None) for ratio in ratios]
    sweep = list(frames) if len(frames) > 1 else [None]
    out = []
    for count in sweep:
        for method in methods:
            if method == REFERENCE:
                out += [Setting(method, 0.0, None, count)] if count == sweep[0] else []
            else:
                out += [Setting(method, ratio, budget, count) for ratio, budget in amounts]
    return out


def plan_run(
    items: list[EvalItem],
    methods: list[str],
    ratios: list[float],
    *,
    use_time_bound: bool = False,
    done: set[PredictionKey] | frozenset[PredictionKey] = frozenset(),
    budgets: list[int] = (),
    frames: list[int | None] = (None,),
) -> RunPlan:
    """Group the pending predictions by (video, time bound, frame count of a sweep), in first-appearance order."""
    settings = sweep_of(methods, ratios, budgets, frames)
    grouped: dict[tuple[Path, tuple[float, float] | None], list[EvalItem]] = {}
    for item in items:
        bound = item.time_bound if use_time_bound else None
        grouped.setdefault((item.video, bound), []).append(item)
    groups = []
    for (video, bound), group_items in grouped.items():
        for count in dict.fromkeys(s.frames for s in settings):
            sessions = []
            for s in (s for s in settings if s.frames == count):
                pending = tuple(i for i in group_items
                                if prediction_key(i.bench, i.id, s.method, s.ratio, s.budget, s.frames) not in done)
                if pending:
                    sessions.append(Session(s.method, s.ratio, pending, s.budget, s.frames))
            if sessions:
                groups.append(VideoGroup(video, bound, tuple(sessions), count))
    return RunPlan(tuple(groups))
