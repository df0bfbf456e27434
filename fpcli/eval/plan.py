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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fpcli.eval.errors import EvalInputError
from fpcli.eval.items import EvalItem
from fpcli.eval.scoring import REFERENCE

PredictionKey = tuple[str, str, str, float]  # bench, item id, method, ratio


def prediction_key(bench: str, item_id: str, method: str, ratio: float) -> PredictionKey:
    return (bench, item_id, method, 0.0 if method == REFERENCE else float(ratio))


@dataclass(frozen=True)
class Session:
    method: str
    ratio: float
    items: tuple[EvalItem, ...]


@dataclass(frozen=True)
class VideoGroup:
    video: Path
    time_bound: tuple[float, float] | None  # frames are sampled inside it (protocols with time bounds)
    sessions: tuple[Session, ...]

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


def plan_run(
    items: list[EvalItem],
    methods: list[str],
    ratios: list[float],
    *,
    use_time_bound: bool = False,
    done: set[PredictionKey] | frozenset[PredictionKey] = frozenset(),
) -> RunPlan:
    """Group the pending predictions by (video, time bound), in first-appearance order."""
    pairs = settings_of(methods, ratios)
    grouped: dict[tuple[Path, tuple[float, float] | None], list[EvalItem]] = {}
    for item in items:
        bound = item.time_bound if use_time_bound else None
        grouped.setdefault((item.video, bound), []).append(item)
    groups = []
    for (video, bound), group_items in grouped.items():
        sessions = []
        for method, ratio in pairs:
            pending = tuple(i for i in group_items if prediction_key(i.bench, i.id, method, ratio) not in done)
            if pending:
                sessions.append(Session(method, ratio, pending))
        if sessions:
            groups.append(VideoGroup(video, bound, tuple(sessions)))
    return RunPlan(tuple(groups))
