"""FlashVID (Fan et al., ICLR 2026, arXiv 2602.08024; Fanziyang-v/FlashVID): its vision-side compression.

As `flashvid/utils.py` and `flashvid/token_selection.py` of the authors' code (commit 1d37422) run it:

1. **Dynamic segmentation (DySeg).** The cosine of consecutive frames' mean features; a transition below
   `segment_threshold` starts a new segment. With fewer than `min_segments` segments, the least similar remaining
   transitions are cut too (complementary segmentation).
2. **Per-frame budgets.** Frame t gets b_t of the k tokens (k spread evenly, sizes differ by at most one); a_t =
   ceil(alpha * b_t) of them are chosen by ADTS, the other b_t - a_t are the frame's share of its segment's
   merged (TSTM) budget.
3. **ADTS** (attention- and diversity-based token selection), per frame: distances 1 - cos(x_i, x_j), each
   column j scaled by the attention token j receives in the vision tower (and, with `relevance`, by its dot
   product with the segment's mean feature: ADTS v2, the authors' LLaVA setting; v1 on Qwen-VL). Greedy max-min:
   first the token whose second-smallest scaled column entry is largest, then repeatedly the token farthest (scaled
   distance) from its nearest selected token.
4. **Temporal merging (TAM).** Every token not selected by ADTS in a segment's later frames finds the most similar
   unselected token of the previous frame; above `temporal_threshold` it merges into it (chains reach back to the
   segment's first frame; the merged token is the mean of its chain, at the earliest token's place). If that would
   leave fewer tokens than the segment's TSTM budget, only the most similar pairs merge (the authors' soft
   threshold).
5. **Spatial merging.** The segment's TSTM budget is shared over its frames in proportion to the tokens TAM left in
   each, and each frame's tokens are clustered by DPC-kNN (k = min(clusters, 7)) into that many tokens: the mean of
   each cluster, at its centre's place.

Differences from the authors' code (docs/methods.md): exact budgets (largest-remainder shares instead of per-frame
ceil); TAM averages a chain over all its tokens (their counts add one per direct child, so a chain of three
identical tokens x merges to 1.5 x); ADTS v2 never picks a token twice (their v2 loop can, with negative
relevance); single-frame segments cluster only what ADTS left (theirs: every token of the frame); duplicate
complementary cuts cannot occur; ties go to the lower index, never to random noise. `merged_into` follows each
merged token through its chain to its cluster's centre (for pictures).
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
from fpcli.prune.visionzip import frame_budgets

CLUSTER_KNN = 7  # the authors' fixed k of DPC-kNN in spatial merging (k = min(clusters, 7))


def segments(features: Tensor, threshold: float, min_segments: int) -> Tensor:
    """The segment of each frame [T] (0, 0, 1, ...): cuts where consecutive frames' mean features differ."""
    unit = F.normalize(features.float().mean(1), dim=-1)  # [T, D]
    transition = (unit[:-1] * unit[1:]).sum(-1)  # [T-1]
    cut = transition < threshold
    missing = min(min_segments - 1 - int(cut.sum()), int((~cut).sum()))
    if missing > 0:  # complementary cuts: the least similar transitions not cut yet
        cut |= descending_rank((-transition).masked_fill(cut, -math.inf)[None])[0] < missing
    return torch.cat([cut.new_zeros(1, dtype=torch.long), cut.long().cumsum(0)])


def adts(features: Tensor, attention: Tensor, counts: Tensor, segment_of: Tensor, relevance: bool) -> Tensor:
    """selected [T, N]: counts[t] tokens of frame t by attention-calibrated greedy max-min distance."""
    t, n, _ = features.shape
    xf = features.float()
    unit = F.normalize(xf, dim=-1)
    weight = attention.float()  # [T, N]
    if relevance:  # ADTS v2: times each token's dot product with its segment's mean feature
        segment_sum = torch.zeros(int(segment_of.max()) + 1, xf.shape[-1], device=xf.device)
        segment_sum.index_add_(0, segment_of, xf.mean(1))
        segment_mean = segment_sum / torch.bincount(segment_of)[:, None]  # [S, D]
        weight = weight * (xf * segment_mean[segment_of][:, None, :]).sum(-1)
    dist = (1 - unit @ unit.transpose(1, 2)) * weight[:, None, :]  # [T, N, N], column j scaled by token j's weight
    score = dist.kthvalue(2, dim=1).values if n > 1 else dist[:, 0]  # [T, N], the first pick's criterion
    selected = torch.zeros(t, n, dtype=torch.bool, device=features.device)
    for step in range(int(counts.max())):  # one greedy pick per frame per step; frames that are done sit out
        active = (counts > step)[:, None]  # [T, 1]
        pick = score.masked_fill(selected, -math.inf).argmax(dim=1)  # [T], ties to the lower index
        selected |= F.one_hot(pick, n).bool() & active
        row = dist.gather(1, pick[:, None, None].expand(-1, 1, n))[:, 0]  # [T, N]: distances to the new pick
        score = row if step == 0 else torch.minimum(score, row)
    return selected


def temporal_merge(
    features: Tensor, free: Tensor, segment_of: Tensor, threshold: float, budgets: Tensor
) -> tuple[Tensor, Tensor]:
    """(root [T*N]: the flat index of each free token's chain root, itself for a root, -1 for the others;
    means [T, N, D] float32: the mean of each root's chain).

    free [T, N]: tokens ADTS left; budgets [S]: tokens each segment must keep at least (its TSTM budget).
    """
    t, n, _ = features.shape
    xf = features.float()
    unit = F.normalize(xf, dim=-1)
    sim = (unit[1:] @ unit[:-1].transpose(1, 2)).masked_fill(~free[:-1, None, :], -math.inf)  # [T-1, N, N]
    best, anchor = sim.max(dim=2)  # [T-1, N]: most similar free token of the previous frame
    same = (segment_of[1:] == segment_of[:-1])[:, None]
    eligible = torch.cat([torch.zeros_like(free[:1]), free[1:] & same & (best > threshold)])  # [T, N]
    best = torch.cat([torch.full_like(free[:1], -math.inf, dtype=best.dtype), best])  # [T, N]
    anchor = torch.cat([torch.zeros_like(free[:1], dtype=torch.long), anchor])  # [T, N], frame 0: unused
    # Soft threshold: a segment merges at most (free tokens - budget) pairs, the most similar first.
    segment_flat = segment_of[:, None].expand(t, n).reshape(-1)  # [T*N]
    allowed = torch.zeros_like(budgets).index_add_(0, segment_flat, free.reshape(-1).long()) - budgets  # [S]
    order = best.masked_fill(~eligible, -math.inf).reshape(-1).sort(descending=True, stable=True).indices
    order = order[segment_flat[order].sort(stable=True).indices]  # by segment, then most similar first
    sizes = torch.bincount(segment_flat, minlength=len(budgets))
    rank = torch.empty_like(order)
    rank[order] = torch.arange(t * n, device=order.device) - (sizes.cumsum(0) - sizes)[segment_flat[order]]
    merged = eligible.reshape(-1) & (rank < allowed[segment_flat])  # [T*N]
    previous = (torch.arange(t * n, device=order.device) // n - 1) * n + anchor.reshape(-1)
    parent = torch.where(merged, previous, torch.arange(t * n, device=order.device))  # [T*N]
    for _ in range(max(1, math.ceil(math.log2(max(t - 1, 1)))) + 1):  # pointer jumping: every chain to its root
        parent = parent[parent]
    members = free.reshape(-1)
    sums = torch.zeros(t * n, xf.shape[-1], device=xf.device)
    sums.index_add_(0, parent[members], xf.reshape(t * n, -1)[members])  # [T*N, D], at the roots
    counts = torch.bincount(parent[members], minlength=t * n).clamp(min=1)
    return torch.where(members, parent, -1), (sums / counts[:, None]).reshape(t, n, -1)


@register_method("flashvid")
def select_flashvid(
    features: Tensor,
    grid: tuple[int, int],
    k: int,
    *,
    alpha: float,
    relevance: bool,
    temporal_threshold: float,
    segment_threshold: float,
    min_segments: int,
    vision_attention: Tensor,
) -> Selection:
    """DySeg, ADTS, TAM and DPC-kNN merging to exactly k tokens. Options: fpcli.prune.builtin."""
    t, n, _ = features.shape
    device = features.device
    segment_of = segments(features, segment_threshold, min_segments)  # [T]
    budgets = torch.tensor(frame_budgets(k, t), device=device)  # [T]
    fraction = Fraction(repr(float(alpha)))
    chosen = -((-budgets * fraction.numerator) // fraction.denominator)  # [T], ceil(alpha * b_t) exactly
    selected = adts(features, vision_attention, chosen, segment_of, relevance)
    merge_budget = torch.zeros(int(segment_of.max()) + 1, dtype=torch.long, device=device)
    merge_budget.index_add_(0, segment_of, budgets - chosen)  # [S]
    root, means = temporal_merge(features, ~selected, segment_of, temporal_threshold, merge_budget)
    flat = torch.arange(t * n, device=device).reshape(t, n)
    roots = root.reshape(t, n) == flat  # [T, N]: the tokens TAM left
    clusters = apportion(merge_budget, roots.sum(1), segment_of)  # [T]
    is_center, owner = density_peaks(means, roots, clusters, clusters.clamp(min=1, max=CLUSTER_KNN))
    merged = merge_clusters(means, owner)  # [T, N, D] float32
    keep = torch.cat([flat[selected], flat[is_center]])
    kept = torch.cat([features[selected], merged[is_center].to(features.dtype)])
    # Where each token went (for pictures): through its chain's root to that root's cluster centre; -1 if kept or
    # dropped (a frame without clusters drops its roots and their chains).
    center = torch.where(owner >= 0, flat // n * n + owner, -1).reshape(-1)  # [T*N], for the roots
    merged_into = torch.where(root >= 0, center[root.clamp(min=0)], -1)
    merged_into[keep] = -1
    return Selection(keep=keep, features=kept, merged_into=merged_into)
