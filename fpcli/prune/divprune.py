"""DivPrune (Alvar et al., CVPR 2025): keep the most diverse tokens of the whole video.

The authors' code selects greedily by max-min cosine distance over all T*N tokens at once:
  1. the first token is the most isolated one: the largest cosine distance to its nearest
     other token;
  2. every next token is the one whose distance to its nearest already-selected token is largest.
Distance is 1 - cosine similarity of the L2-normalised features, in float32 whatever the input
dtype. Ties go to the lowest flat index (the first maximum, as torch.argmax in their code). One
change: their loop can pick a selected token again once only duplicates of selected tokens
remain (its own distance 0 ties them); here selected tokens are excluded, so the result is
always k distinct tokens.

The reference materialises the M x M distance matrix (M = T*N): 630 MB at 64 x 196 tokens and
40 GB at 512 frames. Here nothing of size M x M is ever held:
  - step 1 bounds each token's nearest-neighbour similarity from below by its similarity to its
    grid and temporal neighbours, then computes exact nearest neighbours block by block, most
    promising tokens first, and stops once no unvisited token can beat the best found;
  - step 2 needs one distance column per pick. The `_BLOCK` best-scoring tokens get theirs in
    one matmul, and picks proceed from that block for as long as the argmax stays inside it;
    then the next block reuses the columns of its tokens that were computed but not picked.
    Each pick is still the exact argmax over all tokens; the blocks only spare re-reading all
    features for every pick. Cost: O(M * D) per pick, about 1.4 columns per pick in practice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fpcli.prune.registry import Selection, register_method

_BLOCK = 32  # candidate columns per matmul in the greedy loop
_ROWS_ELEMENTS = 1 << 22  # rows x M similarity entries per block in the nearest-neighbour search
_MIN_ROWS = 256  # but at least this many rows, so the matmul stays efficient
_SLACK = 1e-4  # float margin between the neighbour bound and exact similarities (work only, not results)


def _neighbour_bound(x: Tensor, t: int, h: int, w: int) -> Tensor:
    """Largest similarity of each token to the same cell in adjacent frames and to adjacent cells:
    a lower bound on its nearest-neighbour similarity. -inf where a token has no neighbour."""
    grid = x.reshape(t, h, w, -1)  # [T, H, W, D]
    bound = torch.full((t, h, w), float("-inf"), device=x.device)  # [T, H, W]
    for dim in range(3):
        if grid.shape[dim] < 2:
            continue
        n = grid.shape[dim] - 1
        sim = (grid.narrow(dim, 0, n) * grid.narrow(dim, 1, n)).sum(-1)  # pairs along dim
        bound.narrow(dim, 0, n).copy_(torch.maximum(bound.narrow(dim, 0, n), sim))
        bound.narrow(dim, 1, n).copy_(torch.maximum(bound.narrow(dim, 1, n), sim))
    return bound.reshape(-1)  # [M]


def _most_isolated(x: Tensor, t: int, h: int, w: int) -> Tensor:
    """Index of the token with the smallest nearest-neighbour similarity (first on ties), exactly.

    `bound` holds a lower bound on every token's nearest-neighbour similarity (+inf once the exact
    value is known). Blocks of rows are visited lowest bound first; each block's similarities to
    all tokens also tighten everyone's bound, so unvisited tokens drop out quickly.
    """
    m = x.shape[0]
    bound = _neighbour_bound(x, t, h, w)  # [M]
    nearest = torch.full((m,), float("inf"), device=x.device)  # [M], exact where visited
    rows = max(_MIN_ROWS, _ROWS_ELEMENTS // m)
    best = float("inf")
    while True:
        block = torch.sort(bound, stable=True).indices[:rows]  # [B], most promising first
        block = block[bound[block] <= best + _SLACK]  # the rest cannot reach `best`
        if len(block) == 0:
            break
        sim = x[block] @ x.T  # [B, M]
        sim[torch.arange(len(block), device=x.device), block] = float("-inf")  # not its own neighbour
        nearest[block] = sim.amax(dim=1)
        bound = torch.maximum(bound, sim.amax(dim=0))
        bound[block] = float("inf")
        best = min(best, nearest[block].min().item())
    return (1 - nearest).argmax()  # in distances, as the reference: 1 - s can tie where s does not


@register_method("divprune")
def select_divprune(features: Tensor, grid: tuple[int, int], k: int) -> Selection:
    """Greedy max-min cosine diversity over all tokens of the video (see module docstring)."""
    t, n, d = features.shape
    x = F.normalize(features.reshape(t * n, d).float(), dim=1)  # [M, D], unit rows
    keep = torch.empty(k, dtype=torch.long, device=x.device)
    keep[0] = _most_isolated(x, t, *grid)
    # Distances 1 - similarity, as the reference computes them, so ties fall the same way.
    score = 1 - x @ x[keep[0]]  # [M], distance to the nearest selected token
    score[keep[0]] = float("-inf")  # selected tokens are never picked again
    picked = 1
    slot = torch.full((t * n,), -1, dtype=torch.long, device=x.device)  # [M], column of a cached token, else -1
    columns = x.new_empty(t * n, 0)  # [M, B], distance columns of the cached tokens
    while picked < k:
        candidates = torch.sort(score, descending=True, stable=True).indices[:_BLOCK]  # [B], ties by index
        cached = slot[candidates]  # [B]
        fresh = cached < 0
        block = x.new_empty(t * n, len(candidates))  # [M, B]
        block[:, ~fresh] = columns[:, cached[~fresh]]  # columns never change: reuse unpicked ones
        block[:, fresh] = 1 - x @ x[candidates[fresh]].T
        columns = block
        slot.fill_(-1)
        slot[candidates] = torch.arange(len(candidates), device=x.device)
        while picked < k:
            pick = score.argmax()  # exact greedy choice over all tokens, first index on ties
            column = slot[pick].item()
            if column < 0:  # left the block: fetch the next one
                break
            keep[picked] = pick
            score = torch.minimum(score, columns[:, column])
            score[pick] = float("-inf")
            picked += 1
    return Selection(keep)
