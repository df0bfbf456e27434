"""Qwen-VL vision tower over a clip, in chunks of temporal groups: merged tokens [T', h*w, D] (+ DeepStack).

Both towers attend within one temporal group only (their cu_seqlens restart every group; Qwen2.5-VL's windows
lie inside a frame), so encoding groups in chunks gives exactly the tokens of one call over the whole clip while
only one chunk's patches and activations exist at a time.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from fpcli.model.profiles import Progress
from fpcli.model.qwen.video_input import VideoGeometry, VideoSpec, patchify


@torch.inference_mode()
def encode_groups(
    visual,
    frames: np.ndarray,
    spec: VideoSpec,
    geo: VideoGeometry,
    *,
    device: torch.device,
    dtype: torch.dtype,
    chunk: int,
    deepstack: bool,
    progress: Progress | None = None,
) -> tuple[Tensor, Tensor | None]:
    """uint8 frames [T, H, W, 3] -> (features [T', h*w, D], DeepStack [T', h*w, layers, D] or None)."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    tp = spec.temporal_patch_size
    tokens, deep = [], []
    for first in range(0, geo.groups, chunk):
        groups = min(chunk, geo.groups - first)
        pixels = patchify(frames[first * tp : (first + groups) * tp], spec, geo).to(device=device, dtype=dtype)
        out = visual(pixels, grid_thw=geo.grid_thw(groups).to(device))
        tokens.append(out.pooler_output)  # [groups*h*w, D]
        if deepstack:
            deep.append(torch.stack(out.deepstack_features, dim=1))  # [groups*h*w, layers, D]
        if progress is not None:
            progress("encode", first + groups, geo.groups)
    per_group = geo.grid[0] * geo.grid[1]
    features = torch.cat(tokens).view(geo.groups, per_group, -1)
    stacked = torch.cat(deep).view(geo.groups, per_group, *deep[0].shape[1:]) if deepstack else None
    return features, stacked
