"""G-Prune: graph-propagated token importance within a frame, and the per-frame `gprune` method.

Per frame, tokens form a graph whose edges are the cosine similarities >= 0.5; a sharp
row softmax turns it into a random walk, and five steps of that walk spread each token's
feature norm over the tokens similar to it. Tokens that collect the most mass (divided by
their degree, so large uniform regions do not dominate) are the frame's most representative.
ForestPrune uses these scores to pick its nodes; `gprune` keeps them directly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fpcli.prune.registry import Selection, register_method

__all__ = ["gprune_scores", "rank_key", "ranked_tokens"]

SIMILARITY_FLOOR = 0.5  # edges weaker than this are dropped
TEMPERATURE = 0.03  # softmax temperature: sharp, so the walk stays on strong edges
WALK_STEPS = 5  # A is raised to this power
FRAME_CHUNK = 32  # frames scored at once: bounds the [chunk, N, D] float32 copies


def gprune_scores(features: Tensor) -> Tensor:
    """G-Prune score of every token: [T, N, D] any float dtype -> float32 [T, N].

    Computed in float32 whatever the input dtype, so scores (and the selections made from
    them) do not depend on it. Frames are independent and batched (bmm, matrix_power on
    [chunk, N, N]).
    """
    chunks = [_scores(chunk.float()) for chunk in features.split(FRAME_CHUNK)]
    return torch.cat(chunks)


def _scores(x: Tensor) -> Tensor:
    xn = F.normalize(x, dim=-1)  # [T, N, D]
    a = xn @ xn.transpose(1, 2)  # [T, N, N] cosine similarity
    a = torch.where(a < SIMILARITY_FLOOR, 0.0, a) / TEMPERATURE
    a = torch.where(a.abs() < 1e-6, -5000.0, a)  # dropped edges get ~zero walk probability
    a = a.softmax(dim=-1)
    degree = (a > 0).sum(dim=-1).float()  # [T, N]
    walk = torch.linalg.matrix_power(a, WALK_STEPS)  # [T, N, N]
    weight = x.norm(dim=-1)  # [T, N]
    scores = (weight.unsqueeze(1) @ walk).squeeze(1) / degree  # [T, N]
    return torch.where(scores.isnan(), 0.0, scores)  # NaN only, as the released code: inf stays inf


def rank_key(values: Tensor, index: Tensor) -> Tensor:
    """int64 keys ordering float32 `values` descending, ties by ascending `index` (< 2**32).

    All keys are distinct, so `topk`/`sort` on them are deterministic on every device:
    the float's bits are mapped to an order-preserving integer (with -0.0 == 0.0, as the
    float comparison has it) in the high half, the inverted index in the low half.
    """
    bits = (values.float() + 0.0).view(torch.int32).long()  # + 0.0 turns -0.0 into 0.0
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # negative floats count down
    return ordered * 2**32 + (2**32 - 1 - index)


def ranked_tokens(scores: Tensor) -> Tensor:
    """Spatial indices of each frame's tokens, best score first, ties to the lower index: [T, N]."""
    index = torch.arange(scores.shape[1], device=scores.device)  # [N]
    return rank_key(scores, index).argsort(dim=1, descending=True)


@register_method("gprune")
def select(features: Tensor, grid: tuple[int, int], k: int) -> Selection:
    """Per-frame G-Prune: each frame keeps its k // T best tokens; the k % T leftover tokens go
    to the frames whose next-best token scores highest (ties to the earlier frame). So k < T
    keeps the single best token of the k frames with the highest best scores."""
    t, n, _ = features.shape
    scores = gprune_scores(features)  # [T, N]
    order = ranked_tokens(scores)  # [T, N]
    base, extra = divmod(k, t)
    counts = torch.full((t,), base, dtype=torch.long, device=features.device)  # [T]
    if extra:  # then base < N, so every frame has a next-best token at rank `base`
        next_best = scores.gather(1, order[:, base : base + 1]).squeeze(1)  # [T]
        frames = torch.arange(t, device=features.device)
        lucky = rank_key(next_best, frames).topk(extra).indices
        counts[lucky] += 1
    ranks = torch.arange(n, device=features.device)  # [N]
    kept = ranks.unsqueeze(0) < counts.unsqueeze(1)  # [T, N] by rank
    flat = order + torch.arange(t, device=features.device).unsqueeze(1) * n  # [T, N] flat token index
    return Selection(keep=flat[kept])
