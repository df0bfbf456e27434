"""`ClipFeatures`: a clip after the vision tower, before pruning; what every question, method and ratio reuses.

`VideoLLM.encode_clip` makes one; `VideoLLM.start` prunes it for a session of questions. The feature cache
stores it as `tensors()` (safetensors-ready) plus `meta()` (JSON-ready) and rebuilds it with `from_parts`, which
round-trips every field exactly (a cache hit then sets `cache`, `decode_s`, `encode_s`, `cache_load_s` itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from torch import Tensor

_EXTRA = "extras."  # tensors() key prefix of the vision tower's side outputs


@dataclass
class ClipFeatures:
    """Pooled visual tokens of one sampled clip and the facts about its sampling."""

    video: str
    features: Tensor  # [T, N, D] pooled, before pruning, in the model's dtype and on its device; N = H*W row-major
    grid: tuple[int, int]  # (H, W) after pooling
    timestamps: list[float]  # [T] seconds since the first frame
    duration: float  # seconds
    frame_indices: list[int]  # [T] positions of the frames in a full decode
    extras: dict[str, Tensor] = field(default_factory=dict)  # per-token side outputs, e.g. "vision_attention" [T, N]
    decode_s: float = 0.0
    encode_s: float = 0.0
    cache_load_s: float = 0.0
    cache: str = "off"  # "hit" | "miss" | "off"
    warnings: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return int(self.features.shape[0])

    @property
    def tokens(self) -> int:
        """Visual tokens before pruning: T' x N."""
        return int(self.features.shape[0] * self.features.shape[1])

    def reused(self) -> ClipFeatures:
        """The same features with their cost already counted elsewhere (decode, encode, cache load 0): for the
        second and later sessions on one clip, so that a run's results add up to what the run cost."""
        return replace(self, decode_s=0.0, encode_s=0.0, cache_load_s=0.0)

    def tensors(self) -> dict[str, Tensor]:
        """The tensors by name: `features` and `extras.<name>` for each extra."""
        return {"features": self.features, **{_EXTRA + name: value for name, value in self.extras.items()}}

    def meta(self) -> dict:
        """Every other field, as plain JSON types."""
        return {
            "video": self.video,
            "grid": [int(self.grid[0]), int(self.grid[1])],
            "timestamps": [float(t) for t in self.timestamps],
            "duration": float(self.duration),
            "frame_indices": [int(i) for i in self.frame_indices],
            "decode_s": float(self.decode_s),
            "encode_s": float(self.encode_s),
            "cache_load_s": float(self.cache_load_s),
            "cache": self.cache,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_parts(cls, tensors: dict[str, Tensor], meta: dict) -> ClipFeatures:
        """The inverse of (`tensors()`, `meta()`); a missing part raises KeyError, so a broken entry is detectable."""
        extras = {name.removeprefix(_EXTRA): value for name, value in tensors.items() if name.startswith(_EXTRA)}
        return cls(
            video=str(meta["video"]),
            features=tensors["features"],
            grid=(int(meta["grid"][0]), int(meta["grid"][1])),
            timestamps=[float(t) for t in meta["timestamps"]],
            duration=float(meta["duration"]),
            frame_indices=[int(i) for i in meta["frame_indices"]],
            extras=extras,
            decode_s=float(meta["decode_s"]),
            encode_s=float(meta["encode_s"]),
            cache_load_s=float(meta["cache_load_s"]),
            cache=str(meta["cache"]),
            warnings=[str(w) for w in meta["warnings"]],
        )
