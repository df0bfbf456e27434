"""Frames -> Qwen-VL vision input (pixel patches + grid), as the checkpoints' own video processors prepare it.

The rules (transformers' Qwen2VLVideoProcessor / Qwen3VLVideoProcessor with `cap_pixels_per_frame=True`, which is
what qwen-vl-utils, the models' reference preprocessing, does), implemented with PIL and torch (no torchvision):
  1. frames (chosen by fpcli.model.qwen.sampling): an odd count is made even by repeating the last frame
     (temporal_patch_size 2), so T' = ceil(T / 2) temporal groups.
  2. size: `smart_resize` to multiples of factor = patch_size * merge_size (28 for Qwen2.5-VL, 32 for Qwen3-VL),
     keeping the aspect ratio, within [min_pixels, max_pixels] per frame. The per-frame cap is the processor's
     budget shared over the frames: Qwen2.5-VL min(longest_edge, 0.9 * 128000 tokens * factor^2 * 2 / T);
     Qwen3-VL min(768 tokens * factor^2, longest_edge / T) (its longest_edge bounds the whole clip), never below
     1.05 * min_pixels. `max_pixels` given by the caller replaces that cap.
  3. bicubic resize (PIL), x / 255, (x - mean) / std with the checkpoint's mean/std (CLIP for Qwen2.5-VL, 0.5 for
     Qwen3-VL).
  4. patches flattened in the order the vision tower expects: per temporal group, per 2x2 merge block (row-major),
     per patch of the block: [channel, frame-in-group, patch row, patch col], so each merged token's 4 patches are
     contiguous and the tower's merged output is (group, merged row, merged col) row-major.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from fpcli.model.errors import ModelError, ModelInputError
from fpcli.model.profiles import MAX_PIXELS_CAP

MAX_ASPECT_RATIO = 200  # smart_resize's limit
DEFAULT_VIDEO_TOKENS = (128, 768)  # transformers' Qwen2-VL/Qwen3-VL video processors: size in merged tokens
_QWEN25_VIDEO_TOKENS = 128000  # transformers' max_video_tokens for Qwen2-VL-style processors (total budget, 90%)
_QWEN3_FRAME_TOKENS = 768  # qwen-vl-utils' VIDEO_MAX_TOKEN_NUM, per frame
CONFIG_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")


@dataclass(frozen=True)
class VideoSpec:
    """What the checkpoint's video processor config says."""

    patch_size: int
    merge_size: int
    temporal_patch_size: int
    min_pixels: int  # size.shortest_edge
    longest_edge: int  # size.longest_edge: per frame (Qwen2.5-VL) or for the whole clip (Qwen3-VL)
    qwen3_rules: bool  # Qwen3-VL's processor: longest_edge bounds the whole clip; frames under the factor upscaled
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: int = 3  # PIL bicubic
    rescale_factor: float = 1 / 255

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    @classmethod
    def from_dir(cls, path: Path, qwen3_rules: bool) -> VideoSpec:
        """From the video processor config, else the image one; only a video config's pixel limits are used (an
        image config's are for images: Qwen2.5-VL's allow 16384 tokens per picture)."""
        for name in CONFIG_FILES:
            file = path / name
            if file.is_file():
                try:
                    return cls.from_dict(json.loads(file.read_text()), qwen3_rules, video=name == CONFIG_FILES[0])
                except (ValueError, KeyError, TypeError) as exc:
                    raise ModelError(f"cannot use preprocessor config {file}: {exc}") from None
        raise ModelError(f"{path} has no preprocessor config ({' or '.join(CONFIG_FILES)})")

    @classmethod
    def from_dict(cls, cfg: dict, qwen3_rules: bool, video: bool = True) -> VideoSpec:
        """`video=False`: the pixel limits are transformers' video processor defaults, 128 and 768 tokens a frame."""
        size = cfg.get("size") or {}
        factor = int(cfg.get("patch_size", 14)) * int(cfg.get("merge_size", 2))
        if video:
            min_pixels = int(cfg.get("min_pixels") or size["shortest_edge"])
            longest = int(cfg.get("max_pixels") or size["longest_edge"])
        else:
            min_pixels, longest = DEFAULT_VIDEO_TOKENS[0] * factor * factor, DEFAULT_VIDEO_TOKENS[1] * factor * factor
        mean, std = cfg["image_mean"], cfg["image_std"]
        if len(mean) != 3 or len(std) != 3:
            raise ValueError("image_mean and image_std must have 3 values")
        return cls(
            patch_size=int(cfg.get("patch_size", 14)),
            merge_size=int(cfg.get("merge_size", 2)),
            temporal_patch_size=int(cfg.get("temporal_patch_size", 2)),
            min_pixels=min_pixels,
            longest_edge=longest,
            qwen3_rules=qwen3_rules,
            mean=(float(mean[0]), float(mean[1]), float(mean[2])),
            std=(float(std[0]), float(std[1]), float(std[2])),
            resample=int(cfg.get("resample", 3)),
            rescale_factor=float(cfg.get("rescale_factor", 1 / 255)),
        )

    def frame_pixel_cap(self, frames: int) -> int:
        """Most pixels per frame for a clip of `frames` frames (rule 2 of the module docstring)."""
        f2 = self.factor * self.factor
        if self.qwen3_rules:
            cap = min(_QWEN3_FRAME_TOKENS * f2, self.longest_edge // frames)
        else:
            total = int(_QWEN25_VIDEO_TOKENS * f2 * 0.9)
            cap = min(self.longest_edge, total * self.temporal_patch_size // frames)
        return max(cap, int(self.min_pixels * 1.05))


def smart_resize(
    height: int,
    width: int,
    factor: int,
    min_pixels: int,
    max_pixels: int,
    *,
    frames: int = 1,
    temporal_factor: int = 1,
    upscale_small: bool = False,
) -> tuple[int, int]:
    """(height, width) rounded to multiples of `factor`, aspect kept, within [min_pixels, max_pixels].

    Qwen-VL's rule: nearest multiples, then scaled down (floor) past max_pixels or up (ceil) below min_pixels.
    Qwen2.5-VL bounds one frame (frames=1); Qwen3-VL's processor bounds the clip, t*h*w with t = `frames` rounded
    to `temporal_factor`, and with `upscale_small` first scales frames smaller than the factor up to it.
    """
    if upscale_small and (height < factor or width < factor):
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ModelInputError(
            f"frames of {width}x{height} have an aspect ratio over {MAX_ASPECT_RATIO}:1, more than Qwen-VL accepts"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    t_bar = round(frames / temporal_factor) * temporal_factor
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt(frames * height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class VideoGeometry:
    """How a clip enters the vision tower: groups and grids, known before any pixel is touched."""

    frames: int  # frames sampled (T)
    groups: int  # temporal groups T' = ceil(T / temporal_patch_size)
    height: int  # resized frame size
    width: int
    patch_grid: tuple[int, int]  # patches per frame (H/p, W/p)
    grid: tuple[int, int]  # merged tokens per frame (h, w)

    @property
    def tokens(self) -> int:
        return self.groups * self.grid[0] * self.grid[1]

    def grid_thw(self, groups: int | None = None) -> Tensor:
        """transformers' video_grid_thw [1, 3] (temporal groups, patch rows, patch cols)."""
        return torch.tensor([[groups or self.groups, *self.patch_grid]])


def geometry(spec: VideoSpec, frames: int, height: int, width: int, max_pixels: int | None = None) -> VideoGeometry:
    """The resized size and grids of `frames` frames of height x width (validates everything first)."""
    if frames < 1:
        raise ModelInputError("no frames to encode")
    if max_pixels is not None and max_pixels > MAX_PIXELS_CAP:
        raise ModelInputError(f"max_pixels {max_pixels} is over {MAX_PIXELS_CAP}, the most Qwen-VL gives a picture")
    if max_pixels is not None and max_pixels < spec.factor * spec.factor:
        raise ModelInputError(
            f"max_pixels {max_pixels} is below one merged token ({spec.factor}x{spec.factor} = "
            f"{spec.factor * spec.factor} pixels)"
        )
    cap = spec.frame_pixel_cap(frames) if max_pixels is None else max_pixels  # per frame
    low = min(spec.min_pixels, cap)
    if spec.qwen3_rules:  # its processor needs at least one group's frames: count the padded ones
        n = max(frames, spec.temporal_patch_size)
        h, w = smart_resize(height, width, spec.factor, low, cap * n, frames=n,
                            temporal_factor=spec.temporal_patch_size, upscale_small=True)  # fmt: skip
    else:
        h, w = smart_resize(height, width, spec.factor, low, cap)
    if h < spec.factor or w < spec.factor:  # only with min_pixels below one merged token, which no checkpoint has
        raise ModelInputError(f"frames of {width}x{height} resize to {w}x{h}, smaller than one merged token")
    groups = -(-frames // spec.temporal_patch_size)
    patch_grid = (h // spec.patch_size, w // spec.patch_size)
    grid = (patch_grid[0] // spec.merge_size, patch_grid[1] // spec.merge_size)
    return VideoGeometry(frames, groups, h, w, patch_grid, grid)


def resize_frames(frames: np.ndarray, spec: VideoSpec, geo: VideoGeometry) -> np.ndarray:
    """uint8 [T, H, W, 3] -> uint8 [T, h, w, 3] at the geometry's size (PIL, the config's filter)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be a uint8 array [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    if frames.shape[1:3] == (geo.height, geo.width):
        return frames
    resample = Image.Resampling(spec.resample)
    size = (geo.width, geo.height)  # PIL sizes are (width, height)
    return np.stack([np.asarray(Image.fromarray(f).resize(size, resample=resample)) for f in frames])


def patchify(frames: np.ndarray, spec: VideoSpec, geo: VideoGeometry) -> Tensor:
    """uint8 frames [F, H, W, 3] (F a multiple of temporal_patch_size after padding) -> float32 pixel patches
    [F/2 * H/p * W/p, 3 * 2 * p * p] in the vision tower's order (module docstring, rule 4)."""
    resized = resize_frames(frames, spec, geo)
    tp, p, m = spec.temporal_patch_size, spec.patch_size, spec.merge_size
    if pad := -len(resized) % tp:  # repeat the last frame, as the processors do
        resized = np.concatenate([resized, np.repeat(resized[-1:], pad, axis=0)])
    pixels = torch.from_numpy(np.ascontiguousarray(resized)).permute(0, 3, 1, 2).to(torch.float32)  # [F, 3, H, W]
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    pixels = (pixels * spec.rescale_factor - mean) / std
    groups = len(pixels) // tp
    gh, gw = geo.patch_grid
    patches = pixels.view(groups, tp, 3, gh // m, m, p, gw // m, m, p)
    patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # [T', h, w, m, m, C, tp, p, p]
    return patches.reshape(groups * gh * gw, 3 * tp * p * p)


def group_timestamps(timestamps: np.ndarray, temporal_patch_size: int) -> list[float]:
    """Seconds of each temporal group: the mean of its first and last frame (the last frame repeated to pad), as
    Qwen3-VL's processor computes the `<t seconds>` it writes."""
    times = [float(t) for t in timestamps]
    times += [times[-1]] * (-len(times) % temporal_patch_size)
    return [(times[i] + times[i + temporal_patch_size - 1]) / 2 for i in range(0, len(times), temporal_patch_size)]


def seconds_per_group(frames: int, duration: float, temporal_patch_size: int) -> float:
    """Qwen2.5-VL's second_per_grid_ts: temporal_patch_size / the clip's sampling rate (frames / duration)."""
    if duration <= 0 or frames < 2:
        return 1.0
    return temporal_patch_size / (frames / duration)
