"""ClipFeatures: a clip's pooled visual tokens before pruning, and what the feature cache stores of them.

Every method and ratio starts from the same features, so they are computed (or loaded) once per clip. `tensors()` and
`meta()` are the two halves an on-disk entry holds; `from_parts` puts them back together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

_EXTRA = "extras."  # prefix of the side outputs among tensors()


@dataclass
class ClipFeatures:
    """Pooled visual tokens of one sampled clip, with where they came from and what they cost."""

    video: str
    features: Tensor  # [T, N, D] pooled, before pruning, in the model's dtype and on its device
    grid: tuple[int, int]  # (H, W) of one frame's pooled tokens, N = H * W
    timestamps: list[float]  # [T] seconds since the first frame
    duration: float
    frame_indices: list[int]  # [T] positions of the frames in a full decode
    extras: dict[str, Tensor] = field(default_factory=dict)  # per-token side outputs of the tower, e.g. [T, N]
    decode_s: float = 0.0
    encode_s: float = 0.0
    cache_load_s: float = 0.0
    cache: str = "off"  # "hit" | "miss" | "off"
    warnings: list[str] = field(default_factory=list)

    def tensors(self) -> dict[str, Tensor]:
        """The features and the extras, by name (extras under `extras.<name>`)."""
        return {"features": self.features, **{_EXTRA + name: value for name, value in self.extras.items()}}

    def meta(self) -> dict:
        """The JSON-serialisable facts of the clip (no timings: they describe one run, not the clip)."""
        return {
            "video": self.video,
            "grid": list(self.grid),
            "timestamps": [float(t) for t in self.timestamps],
            "duration": float(self.duration),
            "frame_indices": [int(i) for i in self.frame_indices],
        }

    @classmethod
    def from_parts(cls, tensors: dict[str, Tensor], meta: dict) -> ClipFeatures:
        """The inverse of tensors() + meta()."""
        return cls(
            video=meta["video"],
            features=tensors["features"],
            grid=(int(meta["grid"][0]), int(meta["grid"][1])),
            timestamps=[float(t) for t in meta["timestamps"]],
            duration=float(meta["duration"]),
            frame_indices=[int(i) for i in meta["frame_indices"]],
            extras={name[len(_EXTRA) :]: value for name, value in tensors.items() if name.startswith(_EXTRA)},
        )
