"""Frames -> pooled visual tokens [T, N, D]: vision tower in chunks of frames, feature layer, projector, pooling.

The steps and their order follow transformers' `LlavaOnevisionModel.get_video_features` (and LLaVA-NeXT's
`encode_multimodals`): SigLIP hidden state of `vision_feature_layer` (before the post-layernorm), CLS dropped for
strategy "default", the two-layer projector, then per-frame 2D pooling on the projected grid:
  onevision  bilinear resize to ceil(h/2) x ceil(w/2)  (27x27 -> 14x14), as `apply_pooling` does;
  video      2x2 average pooling, floor                 (27x27 -> 13x13), LLaVA-Video's `get_2dPool` "average".
Frames go through the tower `chunk` at a time so that hundreds of frames never sit in the tower at once; only the
pooled tokens of all frames are kept. Every encoding also returns the feature layer's extras (fpcli.model.llava.vision_extras:
attention received and keys per patch, for visionzip), selected and pooled exactly like the features; they cost
about 0.2% of the tower, so they are always computed and a cached encoding serves every method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fpcli.model.llava.preprocess import Preprocessor, preprocess_frames
from fpcli.model.timing import now
from fpcli.model.llava.vision_extras import capture_queries_keys, encoder_layers, feature_layer_index, layer_extras


@dataclass
class EncodedVideo:
    """Pooled visual tokens of a clip, before pruning."""

    features: Tensor  # [T, N, D] in the model dtype, on the model device; N = H*W in row-major order
    grid: tuple[int, int]  # (H, W) after pooling
    encode_s: float
    # per-token side outputs, pooled like the features: vision_attention [T, N] float32, vision_keys [T, N, Dk]
    extras: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class VisionParts:
    """The modules between pixels and the LLM: SigLIP tower, projector, newline embedding, and their config."""

    tower: nn.Module
    projector: nn.Module
    image_newline: Tensor  # [D]
    feature_layer: int | list[int]
    select_strategy: str  # "full" keeps every patch, "default" drops the first (CLS) token
    patches_per_side: int  # vision image_size // patch_size
    layout: str


def pooled_grid(patches_per_side: int, layout: str) -> tuple[int, int]:
    """(H, W) of the pooled grid of one frame."""
    side = math.ceil(patches_per_side / 2) if layout == "onevision" else patches_per_side // 2
    return side, side


def pool(features: Tensor, patches_per_side: int, layout: str) -> Tensor:
    """Projected patch features [F, h*w, D] -> pooled [F, H*W, D] (row-major)."""
    frames, _, dim = features.shape
    grid = features.view(frames, patches_per_side, patches_per_side, dim).permute(0, 3, 1, 2)  # [F, D, h, w]
    if layout == "onevision":
        grid = F.interpolate(grid, size=list(pooled_grid(patches_per_side, layout)), mode="bilinear")
    else:
        grid = F.avg_pool2d(grid, kernel_size=2)
    return grid.permute(0, 2, 3, 1).reshape(frames, -1, dim)  # [F, H*W, D]


@torch.inference_mode()
def encode_chunk(parts: VisionParts, pixels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Pixel values [F, 3, S, S] -> (pooled projected tokens [F, H*W, D], pooled extras [F, H*W, ...])."""
    layer = parts.feature_layer
    layers = encoder_layers(parts.tower)
    attention_layer = layers[feature_layer_index(layer, len(layers))]
    with capture_queries_keys(attention_layer) as captured:
        out = parts.tower(pixels, output_hidden_states=layer, return_dict=True)  # capture only the selected layer(s)
    if isinstance(layer, int):
        hidden = out.hidden_states[layer]  # [F, h*w(+1), C]
    else:
        hidden = torch.cat([out.hidden_states[i] for i in layer], dim=-1)
    extras = layer_extras(attention_layer, captured)  # [F, h*w(+1)], [F, h*w(+1), Dk]
    if parts.select_strategy == "default":  # the CLS token goes, from the features and from what describes them
        hidden = hidden[:, 1:]
        extras = {name: value[:, 1:] for name, value in extras.items()}
    features = pool(parts.projector(hidden), parts.patches_per_side, parts.layout)
    side = parts.patches_per_side
    attention = pool(extras["vision_attention"][..., None].contiguous(), side, parts.layout)[..., 0]  # [F, N]
    keys = pool(extras["vision_keys"].contiguous(), side, parts.layout)  # [F, N, Dk]
    return features, {"vision_attention": attention, "vision_keys": keys}


def encode_frames(
    parts: VisionParts,
    pre: Preprocessor,
    frames: np.ndarray,
    *,
    device: torch.device,
    dtype: torch.dtype,
    chunk: int,
    progress: Callable[[str, int, int], None] | None = None,
) -> EncodedVideo:
    """uint8 frames [T, H, W, 3] -> EncodedVideo with features [T, N, D], encoding `chunk` frames at a time."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    start = now(device)
    total = len(frames)
    pieces, extras = [], []
    for first in range(0, total, chunk):
        pixels = preprocess_frames(frames[first : first + chunk], pre).to(device=device, dtype=dtype)
        features, chunk_extras = encode_chunk(parts, pixels)
        pieces.append(features)
        extras.append(chunk_extras)
        if progress is not None:
            progress("encode", min(first + chunk, total), total)
    features = torch.cat(pieces)  # [T, N, D]
    joined = {name: torch.cat([piece[name] for piece in extras]) for name in extras[0]}  # [T, N, ...]
    return EncodedVideo(features, pooled_grid(parts.patches_per_side, parts.layout), now(device) - start, joined)

