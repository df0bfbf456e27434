"""DyCoke-style temporal merging (Tao et al., CVPR 2025): drop what the window already showed.

Frames are grouped into windows of `_WINDOW` consecutive frames; each window's first frame is
its reference. A token of a later frame in the window is redundant to the degree that it is
cosine-similar to the reference token at the same grid position, and the most redundant are
dropped first until k remain. DyCoke's released code prunes a fixed fraction per frame pair;
here the budget is global (exactly k over the whole video), so static regions give up all their
repeats before a moving region loses anything.

Reference tokens are dropped only when k is smaller than all of them together. Then a reference
frame's token goes first when it is most similar to the previous window's reference token at the
same position, and the first frame (no earlier window) goes last, losing its lowest-norm tokens
first. Ties go to the lower flat index (kept first).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fpcli.prune.registry import Selection, register_method

_WINDOW = 4  # frames per window, as in DyCoke


@register_method("dycoke")
def select_dycoke(features: Tensor, grid: tuple[int, int], k: int) -> Selection:
    """Keep k tokens: reference frames first, then the tokens least similar to their reference."""
    t, n, _ = features.shape
    x = features.float()  # [T, N, D]
    norm = x.norm(dim=-1).clamp(min=1e-12)  # [T, N], the eps of F.normalize
    reference = x[::_WINDOW]  # [W, N, D], the first frame of each window

    # One score per token, lower = keep sooner, compared within a tier (lower tier = keep sooner):
    # tier 0 the first frame, tier 1 the other reference frames, tier 2 everything else.
    # Offset 0 compares each reference frame with the one before; offset o compares frame
    # 4w + o with its window's reference 4w. Strided views and vecdot: no [T, N, D] temporaries.
    score = torch.empty(t, n, device=x.device)  # [T, N], cosine to what the token may repeat
    for offset in range(_WINDOW):
        frames = slice(offset or _WINDOW, None, _WINDOW)
        count = len(range(t)[frames])
        dot = torch.linalg.vecdot(x[frames], reference[:count])  # [F, N]
        score[frames] = dot / (norm[frames] * norm[::_WINDOW][:count])
    score[0] = -norm[0]  # the first frame has nothing before it
    tier = torch.full((t,), 2, device=x.device)  # [T]
    tier[::_WINDOW] = 1
    tier[0] = 0

    order = torch.sort(score.reshape(-1), stable=True).indices  # [M], ties by flat index
    tiers = tier.repeat_interleave(n)[order]  # [M]
    order = order[torch.sort(tiers, stable=True).indices]  # tier first, score within a tier
    return Selection(order[:k])
