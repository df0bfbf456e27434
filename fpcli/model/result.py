"""What one answered question reports: `AnswerResult` and its JSON form (the CLI's `--json` schema).

The JSON form rounds measurements to what they can resolve, so that results read and diff cleanly: seconds to
0.1 ms, memory to 0.1 MB, TFLOPs to 6 significant digits. The functions below are the rules, for any other
JSON form that reports the same measurements (`forestprune stats`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from fpcli.prune import PruneResult


def round_seconds(seconds: float) -> float:
    return round(float(seconds), 4)


def round_timings(stages: dict[str, float]) -> dict[str, float]:
    """Stage -> seconds, rounded, plus `total`: the sum of the rounded stages, so that they add up."""
    rounded = {name: round_seconds(seconds) for name, seconds in stages.items()}
    return {**rounded, "total": round_seconds(sum(rounded.values()))}


def round_megabytes(megabytes: float) -> float:
    return round(float(megabytes), 1)


def round_tflops(tflops: float) -> float:
    return float(f"{tflops:.6g}")


@dataclass
class TokenCounts:
    """Token counts of the LLM input and output."""

    visual_before: int  # pooled visual tokens before pruning (T * H * W)
    visual_after: int  # visual tokens kept
    newline: int  # newline embeddings of the layout (1 for onevision, T * H for video)
    text: int  # prompt text tokens (chat template, instruction, question), without the video placeholder
    prompt: int  # everything entering the LLM: text + visual tokens entering layer 0 + newline
    generated: int
    # The visual tokens the LLM's layers run on, as stages {"from_layer": i, "visual": n} (n from layer i on): one
    # stage of visual_after for a method before the LLM; in-LLM methods start at visual_before and shrink later.
    visual_in_llm: list[dict[str, int]] = field(default_factory=list)


def visual_stages(per_layer: Sequence[int]) -> list[dict[str, int]]:
    """Visual tokens per decoder layer [n_0, n_1, ...] -> the stages where the count changes."""
    return [{"from_layer": i, "visual": int(n)} for i, n in enumerate(per_layer) if i == 0 or n != per_layer[i - 1]]


@dataclass
class Timings:
    """Seconds per stage; `total` is their sum. The model layer reports `load` as 0: the caller that holds the
    model adds its load time where it wants it counted (the CLI: on a process's first result)."""

    load: float = 0.0
    decode: float = 0.0
    encode: float = 0.0
    cache_load: float = 0.0  # reading the clip's features from the feature cache (a hit: decode and encode are 0)
    prune: float = 0.0
    prefill: float = 0.0
    generate: float = 0.0

    @property
    def total(self) -> float:
        return sum(asdict(self).values())

    def to_dict(self) -> dict[str, float]:
        """The stages and their total, rounded (`round_timings`)."""
        return round_timings(asdict(self))


@dataclass
class PrefillTflops:
    """Analytic LLM prefill cost (`fpcli.model.flops`) of the unpruned and the pruned prompt."""

    before: float
    after: float


@dataclass
class AnswerResult:
    """One answer with everything needed to judge its cost."""

    video: str
    question: str
    answer: str
    model: str
    layout: str
    method: str
    ratio: float
    frames: int  # frames sampled
    grid: tuple[int, int]  # tokens per frame (pooled for LLaVA, merged for Qwen-VL)
    tokens: TokenCounts
    per_frame_kept: list[int]
    timestamps: list[float]
    timing_s: Timings
    peak_memory_mb: float
    prefill_tflops: PrefillTflops
    generated_ids: list[int] = field(default_factory=list, repr=False)  # not part of the JSON form
    warnings: list[str] = field(default_factory=list)  # what the video layer noticed (cut short, frames capped)
    cache: str = "off"  # where the clip's features came from: "hit" (feature cache), "miss" (computed, stored), "off"
    temporal_groups: int | None = None  # Qwen-VL: T' = ceil(frames / 2) pairs of frames (per_frame_kept is per group)
    budget: int | None = None  # the visual tokens asked for (--budget); `ratio` is then 1 - budget / visual_before
    # The visual tokens the deepest layer ran on (flat indices on the features' grid; merges and the forest where the
    # method made them), for pictures; not part of the JSON form
    pruned: PruneResult | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """The JSON form: exactly the documented keys, plain Python types (`temporal_groups` only when set)."""
        out = {
            "video": self.video,
            "question": self.question,
            "answer": self.answer,
            "model": self.model,
            "layout": self.layout,
            "method": self.method,
            "ratio": self.ratio,
            "budget": self.budget,
            "frames": self.frames,
            "grid": [int(self.grid[0]), int(self.grid[1])],
            "tokens": asdict(self.tokens),
            "per_frame_kept": [int(k) for k in self.per_frame_kept],
            "timestamps": [round_seconds(t) for t in self.timestamps],
            "timing_s": self.timing_s.to_dict(),
            "peak_memory_mb": round_megabytes(self.peak_memory_mb),
            "prefill_tflops": {"before": round_tflops(self.prefill_tflops.before),
                               "after": round_tflops(self.prefill_tflops.after)},
            "warnings": list(self.warnings),
            "cache": self.cache,
        }
        if self.temporal_groups is not None:
            out["temporal_groups"] = int(self.temporal_groups)
        return out
