"""Reference methods that ignore the features: keep everything, a regular pattern, or a seeded draw.

They are the yardsticks the content-aware methods are compared against.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fpcli.prune.registry import Selection, register_method


@register_method("none")
def select_none(features: Tensor, grid: tuple[int, int], k: int) -> Selection:
    """Keep every token (declared keeps_all: validate() allows only ratio 0, so k is T*N)."""
    t, n, _ = features.shape
    return Selection(torch.arange(t * n, device=features.device))


def _spread(count: int, length: int, device: torch.device) -> Tensor:
    """`count` distinct positions in [0, length), evenly spaced at the centres of equal parts."""
    j = torch.arange(count, device=device)
    return torch.div((2 * j + 1) * length, 2 * count, rounding_mode="floor")  # [count]


def _grid_pattern(count: int, h: int, w: int, device: torch.device) -> Tensor:
    """`count` distinct flat positions of an h x w grid, spread evenly in both directions.

    Rows: about sqrt(count * h / w) of them (so the kept cells are roughly square), at least
    enough to hold `count` cells, evenly spaced. Each row holds count // rows or one more cell
    (the extra ones go to evenly spaced rows), evenly spaced along the row.
    """
    rows = min(h, count, max(-(-count // w), round((count * h / w) ** 0.5)))
    per_row = torch.full((rows,), count // rows, device=device)  # [rows]
    if count % rows:
        per_row[_spread(count % rows, rows, device)] += 1
    row_at = _spread(rows, h, device)  # [rows]
    j = torch.arange(w, device=device)  # [w]
    cols = torch.div((2 * j + 1) * w, 2 * per_row[:, None], rounding_mode="floor")  # [rows, w]
    flat = row_at[:, None] * w + cols  # [rows, w]
    return flat[j < per_row[:, None]]  # [count], row-major


@register_method("uniform")
def select_uniform(features: Tensor, grid: tuple[int, int], k: int) -> Selection:
    """The same number of tokens in every frame (k // T, plus one in k % T evenly spaced frames),
    laid out as an evenly spaced pattern over the grid."""
    t, n, _ = features.shape
    device = features.device
    counts = torch.full((t,), k // t, device=device)  # [T]
    if k % t:
        counts[_spread(k % t, t, device)] += 1
    parts = []
    for c in sorted({k // t, -(-k // t)} - {0}):  # at most two distinct per-frame counts
        frames = (counts == c).nonzero().squeeze(1)  # [F]
        pattern = _grid_pattern(c, grid[0], grid[1], device)  # [c]
        parts.append((frames[:, None] * n + pattern).reshape(-1))  # [F * c]
    return Selection(torch.cat(parts))


@register_method("random")
def select_random(features: Tensor, grid: tuple[int, int], k: int, *, seed: int) -> Selection:
    """k tokens drawn uniformly without replacement. The draw happens on the CPU with its own
    generator, so a seed gives the same tokens on every device and leaves global RNG state alone."""
    t, n, _ = features.shape
    generator = torch.Generator().manual_seed(seed)
    keep = torch.randperm(t * n, generator=generator)[:k]  # [k]
    return Selection(keep.to(features.device))
