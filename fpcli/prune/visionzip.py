"""VisionZip (Yang et al., CVPR 2025) for video, as its SigLIP ports for LLaVA-OneVision/LLaVA-Video apply it.

Each frame gets the budget K/T (the remainder spread evenly: frame t keeps floor((t+1)K/T) - floor(tK/T)).
Of a frame's budget b, round(b * dominant_share) tokens are *dominant*: those that receive the most attention
in the vision tower's feature layer (mean over heads and queries; SigLIP has no CLS token to ask). The other
c = b - dominant tokens are *contextual*: the frame's remaining tokens, in grid order, give c targets at the fixed
stride max(1, M // c) (M = remaining tokens); every other remaining token joins the target whose key (feature
layer keys, mean over heads, cosine) is most similar, and each contextual token is the mean of its target and the
tokens that joined it. A contextual token sits at its target's grid position, so the layout code places it.

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

DOMINANT_SHARE = 54 / 64  # the paper's video setting: 54 dominant + 10 contextual of 64 tokens per frame


def frame_budgets(k: int, t: int) -> list[int]:
    """Tokens kept per frame: K spread over T frames, sizes differing by at most one, summing to K."""
    return [(i + 1) * k // t - i * k // t for i in range(t)]


def dominant_count(budget: int, dominant_share: float) -> int:
    """round-half-up(budget * dominant_share), exact for the decimal the user typed (as `keep_count`)."""
    return math.floor(Fraction(repr(float(dominant_share))) * budget + Fraction(1, 2))


def _check_share(dominant_share: object) -> None:
    if isinstance(dominant_share, bool) or not isinstance(dominant_share, (int, float)) or not 0 <= dominant_share <= 1:
        raise ValueError(f"dominant_share must be a number in [0, 1], got {dominant_share!r}")


def _zip_frames(
    flat: Tensor, frames: Tensor, n: int, attention: Tensor, keys: Tensor, dominant: int, contextual: int
) -> tuple[Tensor, Tensor]:
    """Frames that share one budget: (flat kept indices [F*(d+c)], their features [F*(d+c), D]).

    flat: all features [T*N, D]; frames: LongTensor [F]; attention [F, N]; keys [F, N, Dk].
    """
    count = len(frames)
    base = frames[:, None] * n  # [F, 1]
    order = attention.sort(dim=1, descending=True, stable=True).indices  # [F, N], ties to the lower index
    top = order[:, :dominant]  # [F, d]
    is_dominant = torch.zeros(count, n, dtype=torch.uint8, device=flat.device).scatter_(1, top, 1)
    rest = is_dominant.sort(dim=1, stable=True).indices[:, : n - dominant]  # [F, M], grid order
    kept, feats = [base + top], [flat[base + top]]  # [F, d], [F, d, D]
    if contextual:
        remaining = n - dominant
        step = max(1, remaining // contextual)
        local = torch.arange(contextual, device=flat.device) * step  # [c]: arange(0, M, step)[:c]
        is_target = torch.zeros(remaining, dtype=torch.bool, device=flat.device)
        is_target[local] = True
        targets, others = rest[:, local], rest[:, ~is_target]  # [F, c], [F, M - c]
        unit = F.normalize(keys.float(), dim=-1)  # [F, N, Dk]
        rows = torch.arange(count, device=flat.device)[:, None]  # [F, 1]
        similarity = unit[rows, others] @ unit[rows, targets].transpose(1, 2)  # [F, M - c, c]
        assign = similarity.argmax(dim=2)  # [F, M - c], the first (lowest-index) target on ties
        dim = flat.shape[1]
        sums = flat[base + targets].float()  # [F, c, D]
        sums.scatter_add_(1, assign[..., None].expand(-1, -1, dim), flat[base + others].float())
        members = torch.ones(count, contextual, device=flat.device).scatter_add_(
            1, assign, torch.ones_like(assign, dtype=torch.float32)
        )  # [F, c], the target itself included
        kept.append(base + targets)
        feats.append((sums / members[..., None]).to(flat.dtype))
    return torch.cat(kept, 1).reshape(-1), torch.cat(feats, 1).reshape(-1, flat.shape[1])


@register_method("visionzip")
def select_visionzip(
    features: Tensor,
    grid: tuple[int, int],
    k: int,
    *,
    dominant_share: float = DOMINANT_SHARE,
    vision_attention: Tensor,
    vision_keys: Tensor,
) -> Selection:
    """Per frame: the most-attended tokens as they are, the rest merged into contextual tokens by key similarity."""
    _check_share(dominant_share)
    t, n, _ = features.shape
    flat = features.reshape(t * n, -1)  # [T*N, D], a view
    budgets = torch.tensor(frame_budgets(k, t), device=features.device)  # [T]
    kept, feats = [], []
    for budget in sorted(set(budgets.tolist())):  # at most two distinct budgets: two batched passes
        if budget == 0:
            continue
        frames = (budgets == budget).nonzero()[:, 0]  # [F]
        dominant = dominant_count(budget, dominant_share)
        index, merged = _zip_frames(
            flat, frames, n, vision_attention[frames], vision_keys[frames], dominant, budget - dominant
        )
        kept.append(index)
        feats.append(merged)
    return Selection(keep=torch.cat(kept), features=torch.cat(feats))
