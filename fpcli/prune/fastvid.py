"""FastVID (Shen et al., *Dynamic Density Pruning for Fast Video LLMs*, NeurIPS 2025): segments, then density.

1. **DySeg.** Frames are cut into temporally ordered segments between consecutive frames whose global features
   (the frame's mean token) have cosine similarity below `tau`, and at the `min_segments - 1` least similar
   transitions in any case.
2. **Budget.** Frame t's budget b_t is k spread evenly over the frames; floor(b_t * context_share) of it are
   context tokens and the rest salient tokens. A segment's context tokens are all placed in its *anchor frames*:
   its last frame and every `anchor_stride`-th frame before it, split evenly among them.
3. **Salient tokens (ATS).** Per frame, the tokens with the highest attention from the frame's global query:
   softmax_i(<mean_t, x_ti> / sqrt(D)). They pass unchanged.
4. **Anchor tokens (DPC-kNN).** Among a frame's other tokens, with distances ||x_i - x_j|| / sqrt(D): density
   rho_i = exp(-mean of the squared distances to its 4 nearest, itself included), delta_i = the distance to the
   nearest denser token (the largest distance in the frame for the densest), score rho_i * delta_i. An anchor
   frame's highest-scoring tokens are its anchors.
5. **Merging (DTM).** For each anchor frame, every non-salient token of its segment joins that frame's anchor of
   highest cosine similarity (an anchor joins itself), and the anchor becomes w * anchor + (1 - w) * mean(members),
   w = max(beta, 1 / (members + 1)). A token of a segment with two anchor frames is merged into one anchor of each,
   as in the authors' code. The merged token keeps the anchor's position.

Exactly k tokens: the budgets in 2 add up to k (the authors floor per-frame counts and drop the remainders). Where an
anchor frame has fewer candidates than its share of context tokens (only at low ratios, where the authors' code
would fail), the surplus becomes further salient tokens of the same segment, by attention; they are not merged.
Ties go to the lower index (the authors break density ties with 1e-6 random noise). Authors' code: LunarShen/FastVID,
fastvid_llavaonevision/LLaVA-NeXT/llava/model/language_model/modeling_qwen2.py; details and differences in
docs/methods.md.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import Tensor

from fpcli.prune.registry import Selection, register_method
from fpcli.prune.visionzip import frame_budgets

NEIGHBOURS = 4  # DPC-kNN's k: density from the 4 nearest tokens (the authors' topk(k=4), itself included)
FRAME_CHUNK = 16  # frames whose [N, N] distances are held at once (Qwen-VL frames can have 1000+ tokens)


def segments(frame_features: Tensor, min_segments: int, tau: float) -> Tensor:
    """DySeg: the segment of each frame [T] long, 0, 0, 1, ... from frame features [T, D]."""
    unit = F.normalize(frame_features, dim=-1)  # [T, D]
    similarity = (unit[:-1] * unit[1:]).sum(dim=-1)  # [T-1], frame t to t+1
    cut = similarity < tau  # [T-1]
    cut[similarity.sort(stable=True).indices[: min_segments - 1]] = True  # the c-1 least similar transitions
    return torch.cat([cut.new_zeros(1, dtype=torch.long), cut.long().cumsum(0)])


def salience(x: Tensor) -> Tensor:
    """Attention of each frame's global query (its mean token) to its tokens: [T, N, D] -> [T, N], rows sum to 1."""
    query = x.mean(dim=1, keepdim=True)  # [T, 1, D]
    return torch.softmax((x @ query.transpose(1, 2)).squeeze(-1) / math.sqrt(x.shape[-1]), dim=-1)


def density_scores(x: Tensor, candidate: Tensor) -> Tensor:
    """DPC-kNN score rho * delta of each candidate token within its frame: x [T, N, D] float32, candidate [T, N]
    bool -> [T, N], -inf for the others. Frames are independent and go FRAME_CHUNK at a time (bounds the [chunk, N, N]
    distance matrices)."""
    return torch.cat([_density(*chunk) for chunk in zip(x.split(FRAME_CHUNK), candidate.split(FRAME_CHUNK))])


def _density(x: Tensor, candidate: Tensor) -> Tensor:
    n = x.shape[1]
    pair = candidate[:, :, None] & candidate[:, None, :]  # [T, N, N] both candidates
    square = x.square().sum(dim=-1)  # [T, N]
    # ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b: one batched product (torch.cdist is several times slower on CPU)
    distance = torch.baddbmm(square[:, :, None] + square[:, None, :], x, x.transpose(1, 2), alpha=-2)
    distance = distance.clamp_(min=0).sqrt_() / math.sqrt(x.shape[-1])  # [T, N, N]
    nearest = distance.masked_fill(~pair, math.inf).topk(min(NEIGHBOURS, n), dim=-1, largest=False).values
    found = nearest.isfinite()  # [T, N, 4]: a frame may have fewer than 4 candidates
    squared = nearest.square().masked_fill(~found, 0).sum(dim=-1) / found.sum(dim=-1).clamp(min=1)
    rho = torch.exp(-squared)  # [T, N]
    index = torch.arange(n, device=x.device)
    # j is denser than i: higher density, or equal density and a lower index (a strict order, so one densest)
    denser = (rho[:, None, :] > rho[:, :, None]) | ((rho[:, None, :] == rho[:, :, None]) & (index < index[:, None]))
    farthest = distance.masked_fill(~pair, 0).amax(dim=(1, 2))  # [T], delta of the frame's densest token
    delta = distance.masked_fill(~(denser & pair), math.inf).amin(dim=-1)  # [T, N]
    delta = torch.where(delta.isinf(), farthest[:, None], delta)
    return (rho * delta).masked_fill(~candidate, -math.inf)


def _top(score: Tensor, count: Tensor) -> Tensor:
    """The `count[t]` highest scores of each row (ties to the lower index): [T, N], [T] -> [T, N] bool."""
    order = score.sort(dim=1, descending=True, stable=True).indices  # [T, N]
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(score.shape[1], device=score.device)
                                            .expand_as(order))
    return rank < count[:, None]


def _budgets(k: int, t: int, n: int, segment: Tensor, context_share: float, anchor_stride: int,
             device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """(salient [T], anchors [T], surplus per segment [S]) token counts; they add up to k."""
    share = Fraction(repr(float(context_share)))  # exact for the decimal the user typed
    budgets = frame_budgets(k, t)
    floors = {b: math.floor(share * b) for b in set(budgets)}  # at most two budgets
    context = torch.tensor([floors[b] for b in budgets], device=device)  # [T]
    salient = torch.tensor(budgets, device=device) - context  # [T]
    frame = torch.arange(t, device=device)
    count = int(segment[-1]) + 1
    last = torch.zeros(count, dtype=torch.long, device=device).scatter_reduce(0, segment, frame, "amax")  # [S]
    back = last[segment] - frame  # [T], frames to the segment's last one
    is_anchor = back % anchor_stride == 0  # [T]
    frames = torch.bincount(segment, is_anchor.long(), minlength=count)[segment]  # [T] anchor frames in segment
    total = torch.bincount(segment, context, minlength=count)[segment]  # [T] the segment's context tokens
    order = frames - 1 - back // anchor_stride  # [T], place among the segment's anchor frames, first = 0
    anchors = ((order + 1) * total // frames - order * total // frames) * is_anchor  # [T], even split, sums exact
    anchors = torch.minimum(anchors, n - salient)  # room left beside the salient tokens
    surplus = torch.bincount(segment, context - anchors, minlength=count)  # [S]
    return salient, anchors, surplus


def _surplus(attention: Tensor, free: Tensor, segment: Tensor, surplus: Tensor) -> Tensor:
    """The `surplus[s]` free tokens of each segment with the highest attention: [T, N] bool."""
    t, n = attention.shape
    order = attention.reshape(-1).sort(descending=True, stable=True).indices  # [T*N]
    order = order[(~free.reshape(-1)[order]).to(torch.uint8).sort(stable=True).indices]  # free ones first
    token_segment = segment.repeat_interleave(n)  # [T*N]
    order = order[token_segment[order].sort(stable=True).indices]  # by segment, then as above
    sizes = torch.bincount(segment, minlength=len(surplus))  # [S] frames
    start = (sizes.cumsum(0) - sizes) * n  # [S], first place of each segment in `order`
    place = torch.arange(t * n, device=attention.device) - start[token_segment[order]]  # [T*N] rank in segment
    chosen = torch.zeros(t * n, dtype=torch.bool, device=attention.device)
    chosen[order] = place < surplus[token_segment[order]]  # free tokens come first, and there are enough
    return chosen.reshape(t, n)


def _merge(x: Tensor, source: Tensor, anchor: Tensor, segment: Tensor, beta: float) -> Tensor:
    """DTM: merged features of every anchor [A, D] in flat-index order. x [T, N, D] float32; source, anchor [T, N]."""
    t, n, d = x.shape
    flat = x.reshape(t * n, d)
    unit = F.normalize(flat, dim=-1)  # [T*N, D]
    anchor_index = anchor.reshape(-1).nonzero()[:, 0]  # [A]
    anchor_frame = anchor_index // n  # [A]
    merged = []
    for seg in segment.unique_consecutive().tolist():  # one pass per segment: its tokens meet only its anchors
        frames = (segment == seg).nonzero()[:, 0]
        mine = (segment[anchor_frame] == seg).nonzero()[:, 0]  # [a] this segment's anchors
        if len(mine) == 0:
            continue
        span = slice(int(frames[0]) * n, (int(frames[-1]) + 1) * n)
        members = source.reshape(-1)[span].nonzero()[:, 0] + span.start  # [M] flat indices
        group = anchor_frame[mine]  # [a] each anchor's frame: a token joins one anchor per anchor frame
        similarity = unit[members] @ unit[anchor_index[mine]].T  # [M, a]
        same = group[None, :] == group.unique()[:, None]  # [F, a] anchors of each anchor frame
        best = similarity[:, None, :].masked_fill(~same[None], -math.inf).argmax(dim=-1)  # [M, F], ties: 1st
        assign = torch.zeros(len(mine), len(members), device=x.device)  # [a, M]
        assign[best.T, torch.arange(len(members), device=x.device).expand_as(best.T)] = 1.0
        count = assign.sum(dim=1, keepdim=True)  # [a, 1], the anchor itself included
        mean = (assign @ flat[members]) / count.clamp(min=1)  # [a, D]
        weight = (1 / (count + 1)).clamp(min=beta)  # [a, 1]
        merged.append(weight * flat[anchor_index[mine]] + (1 - weight) * mean)
    return torch.cat(merged) if merged else flat.new_zeros(0, d)


@register_method("fastvid")
def select_fastvid(
    features: Tensor,
    grid: tuple[int, int],
    k: int,
    *,
    min_segments: int,
    tau: float,
    context_share: float,
    anchor_stride: int,
    beta: float,
) -> Selection:
    """Keep k tokens: per segment, salient tokens as they are and density-chosen anchors merged with their segment.

    The options (defaults and ranges in fpcli.prune.builtin) are checked by the registry before this runs."""
    t, n, _ = features.shape
    x = features.float()  # [T, N, D]
    segment = segments(x.mean(dim=1), min_segments, tau)  # [T]
    salient_count, anchor_count, surplus = _budgets(k, t, n, segment, context_share, anchor_stride, x.device)
    attention = salience(x)  # [T, N]
    salient = _top(attention, salient_count)  # [T, N]
    anchor = _top(density_scores(x, ~salient), anchor_count)  # [T, N], counts <= candidates (-inf last)
    extra = torch.zeros_like(salient)
    if int(surplus.max()) > 0:
        extra = _surplus(attention, ~salient & ~anchor, segment, surplus)
    keep = (salient | anchor | extra).reshape(-1).nonzero()[:, 0]  # [k] ascending
    kept = features.reshape(t * n, -1)[keep]  # [k, D], salient and surplus tokens unchanged
    merged = _merge(x, ~salient & ~extra, anchor, segment, beta)  # [A, D]
    kept[torch.searchsorted(keep, anchor.reshape(-1).nonzero()[:, 0])] = merged.to(features.dtype)
    return Selection(keep=keep, features=kept)
