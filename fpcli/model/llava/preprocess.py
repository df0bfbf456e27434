"""Frame preprocessing as the checkpoint's (video) preprocessor config says, without torchvision.

Resize with PIL using the config's resample filter (PIL is what LLaVA's own SigLIP image processor and transformers'
PIL backend use), then rescale (x * rescale_factor) and normalise ((x - mean) / std), channels first.
The video config (`video_preprocessor_config.json`) wins over the image config (`preprocessor_config.json`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fpcli.model.errors import ModelError

CONFIG_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")


@dataclass(frozen=True)
class Preprocessor:
    """What `preprocess_frames` needs from a preprocessor config."""

    height: int
    width: int
    resample: int  # PIL.Image.Resampling value (3 = bicubic)
    do_resize: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @classmethod
    def from_dir(cls, path: Path) -> Preprocessor:
        """Read the first preprocessor config of CONFIG_FILES present in a checkpoint directory."""
        for name in CONFIG_FILES:
            file = path / name
            if file.is_file():
                try:
                    return cls.from_dict(json.loads(file.read_text()))
                except (ValueError, KeyError, TypeError) as exc:
                    raise ModelError(f"cannot use preprocessor config {file}: {exc}") from None
        raise ModelError(f"{path} has no preprocessor config ({' or '.join(CONFIG_FILES)})")

    @classmethod
    def from_dict(cls, cfg: dict) -> Preprocessor:
        size = cfg.get("size") or {}
        if "height" in size and "width" in size:
            height, width = int(size["height"]), int(size["width"])
        elif "shortest_edge" in size and "longest_edge" not in size:
            height = width = int(size["shortest_edge"])  # SigLIP-style square resize
        else:
            raise ValueError(f"unsupported size {size!r}; expected {{'height': h, 'width': w}}")
        if cfg.get("do_center_crop"):
            raise ValueError("center cropping is not supported (LLaVA-OneVision/-Video resize frames to a square)")
        return cls(
            height=height,
            width=width,
            resample=int(cfg.get("resample", 3)),
            do_resize=bool(cfg.get("do_resize", True)),
            do_rescale=bool(cfg.get("do_rescale", True)),
            rescale_factor=float(cfg.get("rescale_factor", 1 / 255)),
            do_normalize=bool(cfg.get("do_normalize", True)),
            mean=_triple(cfg.get("image_mean", 0.5)),
            std=_triple(cfg.get("image_std", 0.5)),
        )


def _triple(value: float | list[float]) -> tuple[float, float, float]:
    values = [float(value)] * 3 if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) != 3:
        raise ValueError(f"expected 3 channel values, got {value!r}")
    return (values[0], values[1], values[2])


def preprocess_frames(frames: np.ndarray, pre: Preprocessor) -> torch.Tensor:
    """uint8 RGB frames [T, H, W, 3] -> float32 pixel values [T, 3, height, width] on the CPU."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be a uint8 array [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    if pre.do_resize:
        size = (pre.width, pre.height)  # PIL sizes are (width, height)
        resample = Image.Resampling(pre.resample)
        frames = np.stack([np.asarray(Image.fromarray(f).resize(size, resample=resample)) for f in frames])
    pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).to(torch.float32)  # [T, 3, h, w]
    if pre.do_rescale:
        pixels = pixels * pre.rescale_factor
    if pre.do_normalize:
        mean = torch.tensor(pre.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(pre.std, dtype=torch.float32).view(1, 3, 1, 1)
        pixels = (pixels - mean) / std
    return pixels
