"""DPC-kNN (density-peak clustering with k nearest neighbours), batched over groups of tokens, and its merge.

HoliTom and FlashVID both merge a group of tokens (a frame's leftover tokens, a window's static tokens) into c
clusters the way DPC-kNN (Du et al., 2016; as used by Chat-UniVi and PruneVid) does:

  1. distances d(i, j) = ||x_i - x_j|| / sqrt(D) (Euclidean, float32);
  2. density rho_i = exp(-mean of d(i, j)^2 over the k nearest tokens j, the token itself included);
  3. delta_i = distance to the nearest denser token (the largest distance of the group for the densest);
  4. the c tokens with the largest rho_i * delta_i are the centres; every other token joins its nearest centre.

The authors add uniform noise of 1e-6 to the densities "to ensure no tokens have the same density"; here ties are
broken without randomness: of two equal densities the lower index counts as the denser. Ties in score and in
nearest centre also go to the lower index (the first maximum / minimum, as torch's argmax and argmin).

Groups have different sizes, so they arrive padded: x [G, P, D] with valid [G, P]; each group has its own cluster
count and its own k. Everything is one batched computation over [G, P, P] distances.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def descending_rank(score: Tensor) -> Tensor:
    """rank[g, i] = place of token i in group g when sorted by score, highest first, ties to the lower index."""
    order = score.sort(dim=1, descending=True, stable=True).indices  # [G, P]
    positions = torch.arange(score.shape[1], device=score.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)  # [G, P]


def density_peaks(x: Tensor, valid: Tensor, clusters: Tensor, knn: Tensor) -> tuple[Tensor, Tensor]:
    """Cluster each group's valid tokens: (is_center [G, P] bool, owner [G, P] long).

    x [G, P, D]; valid [G, P] bool; clusters [G] (at most the group's valid count); knn [G] in [1, valid count]
    where clusters > 0. owner[g, i] is the index of the centre token i joins (a centre owns itself), -1 for
    padding and for groups without clusters.
    """
    g, p, d = x.shape
    xf = x.float()
    dist = torch.cdist(xf, xf) / math.sqrt(d)  # [G, P, P]
    pair = valid[:, :, None] & valid[:, None, :]  # [G, P, P]
    inf = torch.tensor(math.inf, device=x.device)
    k_max = int(knn.max()) if g else 1
    nearest = dist.masked_fill(~valid[:, None, :], math.inf).topk(k_max, dim=2, largest=False).values  # [G, P, k]
    within = torch.arange(k_max, device=x.device) < knn[:, None, None]  # [G, 1, k]: the group's own k
    mean_sq = torch.where(within, nearest.square(), 0).sum(2) / knn[:, None].clamp(min=1)  # [G, P]
    density = torch.where(valid, torch.exp(-mean_sq), -inf)  # [G, P]
    denser = descending_rank(density)  # [G, P]: 0 is the densest
    is_denser = denser[:, None, :] < denser[:, :, None]  # [G, P, P]: j is denser than i
    largest = torch.where(pair, dist, 0).flatten(1).max(dim=1).values  # [G]
    delta = torch.where(is_denser & pair, dist, inf).min(dim=2).values  # [G, P]
    delta = torch.where(torch.isinf(delta), largest[:, None], delta)  # the densest token of each group
    score = torch.where(valid, delta * density, -inf)  # [G, P]
    is_center = (descending_rank(score) < clusters[:, None]) & valid  # [G, P]
    to_center = dist.masked_fill(~is_center[:, None, :], math.inf)  # [G, P, P]: distances to centres only
    owner = to_center.argmin(dim=2)  # [G, P], ties to the lower index
    positions = torch.arange(p, device=x.device).expand(g, -1)
    owner = torch.where(is_center, positions, owner)  # a centre joins itself even if it duplicates an earlier one
    owner = owner.masked_fill(~valid | (clusters[:, None] == 0), -1)
    return is_center, owner


def merge_clusters(x: Tensor, owner: Tensor, center_weight: float | None = None) -> Tensor:
    """The merged feature at every centre position: [G, P, D] in x's dtype (non-centre rows are meaningless).

    center_weight None: the mean of the centre and its members. A weight b: b * centre + (1 - b) * mean of the
    other members, the centre alone when nobody joined it (HoliTom's beta).
    """
    g, p, d = x.shape
    member = owner >= 0  # [G, P]
    slot = (torch.arange(g, device=x.device)[:, None] * p + owner)[member]  # [M] flat index of each member's centre
    xf = x.float()
    sums = torch.zeros(g * p, d, device=x.device).index_add_(0, slot, xf[member]).view(g, p, d)  # [G, P, D]
    counts = torch.bincount(slot, minlength=g * p).view(g, p).float()  # [G, P], the centre included
    if center_weight is None:
        return (sums / counts.clamp(min=1)[..., None]).to(x.dtype)
    others = (sums - xf) / (counts - 1).clamp(min=1)[..., None]  # mean of the members besides the centre
    merged = torch.where((counts > 1)[..., None], center_weight * xf + (1 - center_weight) * others, xf)
    return merged.to(x.dtype)
