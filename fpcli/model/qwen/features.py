"""`QwenClipFeatures`: a clip's merged visual tokens before pruning, shaped like the team's `ClipFeatures`.

Same fields as `fpcli.model.clip_features.ClipFeatures` (features [T', N, D] with T' temporal groups, the merged
grid, per-frame timestamps, the DeepStack side output in `extras["deepstack"]` [T', N, layers, D]) plus what the
Qwen prompt needs and the video alone does not tell: the sampled frame count, the resized frame size and the
seconds per temporal group.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import Tensor


@dataclass
class QwenClipFeatures:
    video: str
    features: Tensor  # [T', N, D] merged tokens, model dtype/device; N = h*w row-major
    grid: tuple[int, int]  # merged grid (h, w)
    timestamps: list[float]  # seconds of each sampled frame
    duration: float
    frame_indices: list[int]
    extras: dict[str, Tensor] = field(default_factory=dict)  # "deepstack": [T', N, layers, D] (Qwen3-VL)
    decode_s: float = 0.0
    encode_s: float = 0.0
    cache_load_s: float = 0.0
    cache: str = "off"
    warnings: list[str] = field(default_factory=list)
    frames: int = 0  # frames sampled (T); T' = ceil(T / 2)
    resized: tuple[int, int] = (0, 0)  # (height, width) of the frames the tower saw
    temporal_patch_size: int = 2  # frames per temporal group

    def tensors(self) -> dict[str, Tensor]:
        """What a feature cache stores as tensors: the features and every extra."""
        return {"features": self.features, **self.extras}

    def meta(self) -> dict:
        """Everything else, JSON-ready (the timings and cache state describe one run and are not stored)."""
        skip = {"features", "extras", "decode_s", "encode_s", "cache_load_s", "cache", "warnings"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}  # no tensor copies

    @classmethod
    def from_parts(cls, tensors: dict[str, Tensor], meta: dict) -> QwenClipFeatures:
        """Rebuild from `tensors()` and `meta()` (tuples come back from JSON as lists)."""
        names = {f.name for f in fields(cls)}
        values = {k: tuple(v) if k in ("grid", "resized") else v for k, v in meta.items() if k in names}
        extras = {k: v for k, v in tensors.items() if k != "features"}
        return cls(features=tensors["features"], extras=extras, cache="hit", **values)

    @property
    def temporal_groups(self) -> int:
        return int(self.features.shape[0])

    def frame_keep(self, keep: Tensor) -> Tensor:
        """Kept flat indices per temporal group [K] -> per sampled frame (frame*N + row*w + col), each group's
        tokens on both of its frames (what a per-frame picture of the kept patches draws; the padding frame of an
        odd count is left out)."""
        n = self.features.shape[1]
        frame_group = torch.arange(self.frames, device=keep.device) // self.temporal_patch_size  # [T]
        mask = torch.zeros(self.temporal_groups, n, dtype=torch.bool, device=keep.device)
        mask.view(-1)[keep] = True
        return mask[frame_group].view(-1).nonzero()[:, 0]  # [K'] ascending
