"""HoliTom (Shao et al., NeurIPS 2025; cokeshao/HoliTom): holistic token merging before the LLM.

The pre-LLM stage, as `holitom/llava_arch.py` of the authors' code (commit e9b2972) runs it on LLaVA video:

1. **Temporal segmentation.** s(t, n) = cosine of cell n's features in frames t and t+1. A window [s, e] of
   frames makes cell n *static* when s(t, n) > tau for every t in [s, e); its static cells are kept once, so the
   window saves (e - s) * (number of static cells) tokens. A dynamic programme over the frames picks the partition
   into windows of at most `max_window` frames that saves the most (a single frame saves nothing; ties keep the
   shorter windows, as the authors' strict comparison over growing window sizes does).
2. **Temporal merging.** Each static cell of a window becomes one token, the mean of its features over the
   window's frames, at the cell's place in the window's first frame. The other cells of each frame stay as they are
   (*dynamic* tokens).
3. **Spatial merging.** The budget k is shared over the groups of candidates (each frame's dynamic tokens, each
   window's static tokens) in proportion to their sizes. In a frame's group, round(q * (1 - contextual_share)) of
   its q tokens are the ones the vision tower attends to most (dominant); the rest of the group is clustered into
   the remaining q - dominant tokens by DPC-kNN (fpcli.prune.density_peaks, k = min(knn, clusters)). A window's
   static tokens are all clustered (no attention ranking). A cluster becomes one token at its centre's place:
   beta * centre + (1 - beta) * mean of the tokens that joined it.

Differences from the authors' code (docs/methods.md): the budget is exact (their per-group ceil/round shares drift
by a few tokens; here largest-remainder shares sum to k); halves round up; equal densities, scores and distances go
to the lower index instead of random noise; tokens keep grid order within a frame (in their flat layout a window's
static tokens come before its frames' dynamic tokens). When temporal merging alone leaves fewer than k candidates
(only at low ratios), the absorbed frames' own tokens come back, least similar to their previous frame first,
instead of the LLM receiving fewer than k tokens. `merged_into` says where each merged token went (for pictures).
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import Tensor

from fpcli.prune.apportion import apportion
from fpcli.prune.density_peaks import descending_rank, density_peaks, merge_clusters
from fpcli.prune.registry import Selection, register_method


def static_until(features: Tensor, tau: float) -> Tensor:
    """last [T, N]: the last frame e >= t such that cell n stays similar (cosine > tau) from frame t through e."""
    t = features.shape[0]
    unit = F.normalize(features.float(), dim=-1)  # [T, N, D]
    similar = (unit[:-1] * unit[1:]).sum(-1) > tau  # [T-1, N]: frames t and t+1 alike
    steps = torch.arange(t - 1, device=features.device)[:, None].expand_as(similar)
    breaks = torch.where(similar, t - 1, steps)  # [T-1, N]: where a run starting at t ends
    last = breaks.flip(0).cummin(dim=0).values.flip(0)  # [T-1, N], first break at or after t
    return torch.cat([last, torch.full_like(unit[:1, :, 0], t - 1, dtype=torch.long)])  # [T, N]


def saved_tokens(last: Tensor) -> list[list[int]]:
    """saved[s][e] = tokens a window [s, e] saves: (e - s) times the cells static over all of it (0 for e <= s)."""
    t = last.shape[0]
    ends = torch.zeros(t, t, dtype=torch.long, device=last.device).scatter_add_(1, last, torch.ones_like(last))
    static = ends.flip(1).cumsum(1).flip(1)  # [T, T]: static[s, e] = cells with last[s] >= e
    span = (torch.arange(t, device=last.device)[None, :] - torch.arange(t, device=last.device)[:, None]).clamp(min=0)
    return (static * span).tolist()  # one host transfer; the programme below is over frames, not tokens


def static_windows(saved: list[list[int]], max_window: int) -> list[tuple[int, int]]:
    """The partition of the frames into windows [s, e] that saves the most tokens (authors' dynamic programme)."""
    t = len(saved)
    best, start = [0] * t, [0] * t  # best[i]: most saved over frames 0..i; start[i]: first frame of i's window
    for i in range(t):
        value, first = (best[i - 1] if i else 0), i
        for size in range(2, min(i + 1, max_window) + 1):
            j = i - size  # the window is [j + 1, i]
            candidate = (best[j] if j >= 0 else 0) + saved[j + 1][i]
            if candidate > value:
                value, first = candidate, j + 1
        best[i], start[i] = value, first
    windows, i = [], t - 1
    while i >= 0:
        windows.append((start[i], i))
        i = start[i] - 1
    return windows[::-1]


def round_half_up(values: Tensor, fraction: Fraction) -> Tensor:
    """round-half-up(values * fraction) for long values, exactly."""
    return (2 * values * fraction.numerator + fraction.denominator) // (2 * fraction.denominator)


def _restored(is_static: Tensor, first: Tensor, features: Tensor, count: int) -> Tensor:
    """Flat indices of `count` absorbed tokens (static cells of a window's later frames) to keep after all, least
    similar to the previous frame first, ties to the lower index. is_static [T, N]; first [T]: each frame's window
    start."""
    frames = torch.arange(features.shape[0], device=features.device)
    absorbed = is_static & (frames != first)[:, None]  # [T, N]
    unit = F.normalize(features.float(), dim=-1)
    previous = torch.cat([torch.ones_like(unit[:1, :, 0]), (unit[1:] * unit[:-1]).sum(-1)])  # [T, N]
    score = torch.where(absorbed, -previous, -math.inf).reshape(1, -1)
    return (descending_rank(score)[0] < count).nonzero()[:, 0]


@register_method("holitom")
def select_holitom(
    features: Tensor,
    grid: tuple[int, int],
    k: int,
    *,
    tau: float,
    contextual_share: float,
    beta: float,
    knn: int,
    max_window: int,
    vision_attention: Tensor,
) -> Selection:
    """Temporal segmentation, temporal merging of static cells, then per-group attention selection and DPC-kNN
    merging to exactly k tokens. Options are declared (defaults, ranges) in fpcli.prune.builtin."""
    t, n, _ = features.shape
    device = features.device
    last = static_until(features, tau)  # [T, N]
    windows = static_windows(saved_tokens(last), max_window)
    starts = torch.tensor([s for s, _ in windows], device=device)  # [W]
    ends = torch.tensor([e for _, e in windows], device=device)
    lengths = torch.tensor([e - s + 1 for s, e in windows], device=device)
    window_of = torch.repeat_interleave(torch.arange(len(windows), device=device), lengths)  # [T]
    static = (last[starts] >= ends[:, None]) & (lengths > 1)[:, None]  # [W, N]: cells merged over each window
    is_static = static[window_of]  # [T, N]
    # The groups: frames (their dynamic tokens), then windows (their static tokens, in the window's first frame).
    means = torch.zeros(len(windows), n, features.shape[-1], device=device).index_add_(0, window_of, features.float())
    means = means / lengths[:, None, None]  # [W, N, D] float32
    x = torch.cat([features.float(), means])  # [G, N, D], G = T + W; float32 whatever the input dtype
    members = torch.cat([~is_static, static])  # [G, N]
    frame = torch.cat([torch.arange(t, device=device), starts])  # [G]
    sizes = members.sum(1)  # [G]
    candidates = int(sizes.sum())
    restore = max(0, k - candidates)
    quota = apportion(torch.tensor([k - restore], device=device), sizes, torch.zeros_like(sizes))  # [G]
    is_frame = torch.arange(len(x), device=device) < t
    dominant = torch.where(is_frame, round_half_up(quota, 1 - Fraction(repr(contextual_share))), 0)
    attention = torch.cat([vision_attention, torch.zeros_like(means[..., 0], dtype=vision_attention.dtype)])
    ranked = descending_rank(attention.float().masked_fill(~members, -math.inf))  # [G, N]
    is_dominant = (ranked < dominant[:, None]) & members
    clusters = quota - dominant  # [G]
    rest = members & ~is_dominant
    is_center = torch.zeros_like(rest)
    owner = torch.full_like(ranked, -1)  # [G, N]: the cell of the centre each clustered token joined
    merged = x.clone()  # [G, N, D]; rows of centres get their clusters' merged features
    busy = (clusters > 0).nonzero()[:, 0]  # only groups with clusters pay for the [N, N] distances
    if len(busy):
        centers, owner[busy] = density_peaks(x[busy], rest[busy], clusters[busy], clusters[busy].clamp(min=1, max=knn))
        is_center[busy] = centers
        merged[busy] = merge_clusters(x[busy], owner[busy], beta)
    kept = is_dominant | is_center  # [G, N]
    rows, cells = kept.nonzero(as_tuple=True)
    keep = frame[rows] * n + cells
    kept_features = torch.where(is_center[rows, cells][:, None], merged[rows, cells], x[rows, cells]).to(features.dtype)
    if restore:
        back = _restored(is_static, starts[window_of], features, restore)
        keep = torch.cat([keep, back])
        kept_features = torch.cat([kept_features, features.reshape(t * n, -1).index_select(0, back)])
    # Where each token went (for pictures): a dynamic token to its cluster's centre, a static cell of every frame of
    # its window to the centre of the static cluster it joined (in the window's first frame); -1 if kept or dropped.
    target = torch.where(owner >= 0, frame[:, None] * n + owner, -1)  # [G, N]
    merged_into = torch.where(is_static, target[t:][window_of], target[:t]).reshape(-1)  # [T*N]
    merged_into[keep] = -1
    return Selection(keep=keep, features=kept_features, merged_into=merged_into)
