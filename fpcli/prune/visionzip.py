"""VisionZip (Yang et al., CVPR 2025) for video, as its SigLIP ports for LLaVA-OneVision/LLaVA-Video apply it.

Each frame gets the budget K/T (the remainder spread evenly: frame t keeps floor((t+1)K/T) - floor(tK/T)).
Of a frame's budget b, round(b * dominant_share) tokens are *dominant*: those that receive the most attention
in the vision tower's feature layer (mean over heads and queries; SigLIP has no CLS token to ask). The other
c = b - dominant tokens are *contextual*: the frame's remaining tokens, in grid order, give c targets at the fixed
stride max(1, M // c) (M = remaining tokens); every other remaining token joins the target whose key (feature
layer keys, mean over heads, cosine) is most similar, and each contextual token is the mean of its target and the
tokens that joined it. A contextual token sits at its target's grid position, so the layout code places it; the
Selection's `merged_into` says which target each other token joined (for pictures).

Differences from the released code (docs/methods.md): the authors' code adds the target to the mean of its
members (target + mean) rather than averaging them; here the merged token is the mean of all of them, as the
paper describes. Ties (equal attention, equal similarity) go to the lower grid index.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import Tensor

from fpcli.prune.registry import Selection, register_method


def frame_budgets(k: int, t: int) -> list[int]:
    """Tokens kept per frame: K spread over T frames, sizes differing by at most one, summing to K."""
    return [(i + 1) * k // t - i * k // t for i in range(t)]


def dominant_count(budget: int, dominant_share: float) -> int:
    """round-half-up(budget * dominant_share), exact for the decimal the user typed (as `keep_count`)."""
    return math.floor(Fraction(repr(float(dominant_share))) * budget + Fraction(1, 2))


def _contextual(
    features: Tensor, keys: Tensor, is_dominant: Tensor, contextual: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Contextual tokens of every frame: (positions [T, C], valid [T, C], merged features [T, C, D], and the slot
    each token joined [T, N], -1 for the dominant ones).

    features [T, N, D]; keys [T, N, Dk]; is_dominant [T, N] bool; contextual: c_t per frame [T]; C = max c_t
    (slots j >= c_t of a frame are padding, valid False). Merging is one [T, C, N] @ [T, N, D] product with a 0/1
    assignment matrix, so the features are read in place, never gathered.
    """
    t, n, _ = features.shape
    slots = int(contextual.max())
    remaining = n - is_dominant.sum(dim=1)  # [T], M per frame
    step = (remaining // contextual.clamp(min=1)).clamp(min=1)  # [T]
    rest = is_dominant.to(torch.uint8).sort(dim=1, stable=True).indices  # [T, N]: the non-dominant first, grid order
    slot = torch.arange(slots, device=features.device)  # [C]
    valid = slot < contextual[:, None]  # [T, C]
    at = (slot * step[:, None]).clamp(max=n - 1)  # [T, C], index into `rest`: arange(0, M, step)[:c]
    targets = rest.gather(1, at)  # [T, C] grid positions (padding slots: any position, masked out)
    unit = F.normalize(keys.float(), dim=-1)  # [T, N, Dk]
    similarity = unit @ unit.gather(1, targets[..., None].expand(-1, -1, unit.shape[-1])).transpose(1, 2)
    similarity = similarity.masked_fill(~valid[:, None, :], -math.inf)  # [T, N, C]
    rest_rank = (~is_dominant).cumsum(dim=1) - 1  # [T, N], a non-dominant token's place among the frame's rest
    is_target = ~is_dominant & (rest_rank % step[:, None] == 0) & (rest_rank // step[:, None] < contextual[:, None])
    owner = torch.where(is_target, rest_rank // step[:, None], similarity.argmax(dim=2))  # [T, N], ties: 1st target
    owner = owner.masked_fill(is_dominant, -1)  # the dominant tokens join no one
    assignment = (owner[:, None, :] == slot[None, :, None]) & valid[..., None]  # [T, C, N]
    sums = assignment.to(features.dtype) @ features  # [T, C, D]
    members = assignment.sum(dim=2).clamp(min=1)  # [T, C], the target itself included
    return targets, valid, (sums.float() / members[..., None]).to(features.dtype), owner


@register_method("visionzip")
def select_visionzip(
    features: Tensor,
    grid: tuple[int, int],
    k: int,
    *,
    dominant_share: float,
    vision_attention: Tensor,
    vision_keys: Tensor,
) -> Selection:
    """Per frame: the most-attended tokens as they are, the rest merged into contextual tokens by key similarity.

    dominant_share (default and range declared in fpcli.prune.builtin) is checked by the registry before this runs;
    the extras come from prune(..., extras=)."""
    t, n, _ = features.shape
    budgets = frame_budgets(k, t)
    shares = {budget: dominant_count(budget, dominant_share) for budget in set(budgets)}  # at most two budgets
    dominant = torch.tensor([shares[budget] for budget in budgets], device=features.device)  # [T]
    contextual = torch.tensor(budgets, device=features.device) - dominant  # [T]
    order = vision_attention.sort(dim=1, descending=True, stable=True).indices  # [T, N], ties to the lower index
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(n, device=features.device).expand(t, -1))
    is_dominant = rank < dominant[:, None]  # [T, N]
    keep = is_dominant.reshape(-1).nonzero()[:, 0]  # [sum d_t] flat indices
    kept = features.reshape(t * n, -1).index_select(0, keep)  # [sum d_t, D], unchanged
    if int(contextual.max()) == 0:
        return Selection(keep=keep, features=kept)
    targets, valid, merged, owner = _contextual(features, vision_keys, is_dominant, contextual)
    used = valid.reshape(-1).nonzero()[:, 0]  # [sum c_t] slots that hold a contextual token
    flat_targets = (targets + torch.arange(t, device=features.device)[:, None] * n).reshape(-1)  # [T*C]
    merged = merged.reshape(-1, merged.shape[-1]).index_select(0, used)  # [sum c_t, D]
    # For pictures: each merged token's target, by its slot ([T, N] -> flat [T*N]); -1 for the targets, the dominant
    # tokens and a frame's tokens when it has no contextual slot (dropped).
    owner = owner.clamp(min=0)
    joined = ~is_dominant & valid.gather(1, owner)  # [T, N]
    slot_of = owner + torch.arange(t, device=features.device)[:, None] * targets.shape[1]  # [T, N] in [T*C]
    joined.view(-1)[flat_targets[used]] = False
    merged_into = torch.where(joined, flat_targets[slot_of], -1).reshape(-1)  # [T*N]
    return Selection(keep=torch.cat([keep, flat_targets[used]]), features=torch.cat([kept, merged]),
                     merged_into=merged_into)
