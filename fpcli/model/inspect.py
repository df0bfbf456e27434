"""What pruning keeps of one clip, without generating: `VideoLLM.inspect` -> `StatsResult` (`forestprune stats`).

The clip is encoded once (`encode_clip` of the model: vision tower, projector, pooling, or Qwen-VL's merged tokens;
or read from the feature cache) and those same features are pruned by the main method and every compared one, so a comparison isolates the
selection. The JSON form is the documented `stats --json` schema; measurements are rounded by the same rules as an
answer's (fpcli.model.result). Qwen-VL's features have one grid per temporal group of frames: `per_frame_kept`
counts per group, `temporal_groups` says how many, and `keep` is spread over the sampled frames for pictures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from fpcli.model.methods import pruning_for
from fpcli.model.result import round_megabytes, round_seconds, round_timings

if TYPE_CHECKING:
    from torch import Tensor

    from fpcli.model.clip_features import ClipFeatures
    from fpcli.model.base import VideoLLM
    from fpcli.prune import PruneResult


@dataclass
class StatsTimings:
    """Seconds per stage; `load` is 0 unless the caller adds the model's load (the first result of a process)."""

    load: float = 0.0
    decode: float = 0.0
    encode: float = 0.0
    cache_load: float = 0.0
    prune: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return round_timings(asdict(self))


@dataclass
class MethodRun:
    """One method's selection on the shared features."""

    method: str
    visual_after: int
    per_frame_kept: list[int]
    prune_s: float
    forest: Optional[dict[str, Any]]  # ForestSummary.to_dict() for forestprune, else None
    # What was kept (and merged, and the forest) on the features' grid, for pictures; not part of the JSON form
    pruned: Optional[PruneResult] = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "tokens": {"visual_after": self.visual_after},
                "per_frame_kept": list(self.per_frame_kept), "timing_s": {"prune": round_seconds(self.prune_s)},
                "forest": self.forest}


@dataclass
class StatsResult:
    """Per-frame retention, forest and token counts of the main method, and the compared methods' runs."""

    video: str
    model: str
    layout: str
    method: str
    ratio: float
    frames: int
    grid: tuple[int, int]
    visual_before: int
    newline: int
    main: MethodRun
    timestamps: list[float]
    timing_s: StatsTimings
    peak_memory_mb: float
    compare: list[MethodRun] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cache: str = "off"  # "hit" | "miss" | "off", as in an answer
    # [K'] the main method's kept tokens per sampled frame (frame*N + row*W + col), for pictures
    keep: Optional[Tensor] = field(default=None, repr=False)
    temporal_groups: Optional[int] = None  # Qwen-VL: T' temporal groups of frames (per_frame_kept is per group)
    frame_size: Optional[tuple[int, int]] = None  # (h, w) the tower saw when it keeps the aspect (Qwen-VL), else None
    budget: Optional[int] = None  # the visual tokens asked for (--budget); `ratio` is then 1 - budget / visual_before

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: exactly the documented `stats --json` keys, plain Python types (`temporal_groups` only
        when set)."""
        out = {
            "video": self.video,
            "model": self.model,
            "layout": self.layout,
            "method": self.method,
            "ratio": self.ratio,
            "budget": self.budget,
            "frames": self.frames,
            "grid": [int(self.grid[0]), int(self.grid[1])],
            "tokens": {"visual_before": self.visual_before, "visual_after": self.main.visual_after,
                       "newline": self.newline},
            "per_frame_kept": list(self.main.per_frame_kept),
            "timestamps": [round_seconds(t) for t in self.timestamps],
            "timing_s": self.timing_s.to_dict(),
            "peak_memory_mb": round_megabytes(self.peak_memory_mb),
            "forest": self.main.forest,
            "compare": [run.to_dict() for run in self.compare],
            "warnings": list(self.warnings),
            "cache": self.cache,
        }
        if self.temporal_groups is not None:
            out["temporal_groups"] = int(self.temporal_groups)
        return out


def _run(features: Tensor, grid: tuple[int, int], ratio: float | None, method: str, options: Mapping[str, Any],
         extras: Mapping[str, Tensor], budget: int | None = None) -> tuple[PruneResult, MethodRun]:
    """Prune with `method` (vision-tower extras at hand); seconds measured when the device has finished."""
    from fpcli.model.timing import now
    from fpcli.prune import prune

    start = now(features.device)
    result = prune(features, grid, ratio, method, budget=budget, extras=extras, **options)
    seconds = now(features.device) - start
    forest = result.forest.summary().to_dict() if result.forest is not None else None
    return result, MethodRun(result.method, result.k, result.per_frame.tolist(), seconds, forest, result)


def frame_keep(keep: Tensor, frames: int, temporal_patch_size: int, per_frame: int) -> Tensor:
    """Kept flat indices of groups of `temporal_patch_size` frames [K] (group*N + row*W + col) -> the same tokens
    on every frame of their group [K'] ascending (the padding frame of an odd count is left out)."""
    if temporal_patch_size == 1:
        return keep
    import torch

    groups = -(-frames // temporal_patch_size)
    mask = torch.zeros(groups, per_frame, dtype=torch.bool, device=keep.device)
    mask.view(-1)[keep] = True
    frame_group = torch.arange(frames, device=keep.device) // temporal_patch_size  # [T]
    return mask[frame_group].view(-1).nonzero()[:, 0]


def inspect_clip(
    llm: VideoLLM,
    clip_features: ClipFeatures,
    *,
    ratio: float | None,
    method: str,
    options: Optional[Mapping[str, Any]] = None,
    compare: Mapping[str, Mapping[str, Any]] | Sequence[str] = (),
    budget: int | None = None,
) -> StatsResult:
    """Prune a clip's features (the model's `encode_clip`, or the feature cache) with `method` (and each compared
    method: name -> its options, or names for their defaults) at `ratio`, or keeping `budget` visual tokens
    (`none` keeps them all); decode, encode and cache load come from them."""
    from fpcli.model.oom import out_of_memory_is_model_error
    from fpcli.model.timing import peak_memory_mb

    others = dict(compare) if isinstance(compare, Mapping) else {name: {} for name in compare}
    others.pop(method, None)
    with out_of_memory_is_model_error("inspecting", len(clip_features.timestamps)):
        features, grid = clip_features.features.to(llm.device), clip_features.grid  # [T, N, D], (H, W)
        extras = {name: value.to(llm.device) for name, value in clip_features.extras.items()}
        pruned, main = _run(features, grid, ratio, method, options or {}, extras, budget)
        runs = [_run(features, grid, pruning_for(name, ratio, budget)[0], name, opts, extras,
                     pruning_for(name, ratio, budget)[1])[1] for name, opts in others.items()]
    groups, per_frame = features.shape[:2]  # Qwen-VL: T' temporal groups
    frames, step = len(clip_features.timestamps), llm.temporal_patch_size
    return StatsResult(
        video=clip_features.video,
        model=llm.name,
        layout=llm.layout,
        method=pruned.method,
        ratio=float(pruned.ratio),
        frames=frames,
        grid=grid,
        visual_before=groups * per_frame,
        newline=llm.newline_count(groups, grid),
        main=main,
        timestamps=list(clip_features.timestamps),
        timing_s=StatsTimings(decode=clip_features.decode_s, encode=clip_features.encode_s,
                              cache_load=clip_features.cache_load_s, prune=main.prune_s),
        peak_memory_mb=peak_memory_mb(features.device),
        compare=runs,
        warnings=list(clip_features.warnings),
        cache=clip_features.cache,
        keep=frame_keep(pruned.keep, frames, step, per_frame),
        temporal_groups=groups if step > 1 else None,
        frame_size=llm.frame_size(clip_features),
        budget=budget,
    )
