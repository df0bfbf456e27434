"""ForestPrune step 5: merge excess roots, exactly as the reference does, without its R x R rescans.

The reference merges R - K times; each time it takes, among the roots not yet merged, the pair
(a, b), a before b, of highest cosine similarity (ties: the first maximum of the flattened
upper-triangular matrix, i.e. the smallest a, then the smallest b), makes b a child of a and
drops b. Pairs only ever leave the candidate set, so the pair chosen at each step is simply the
next pair, in the fixed order (similarity descending, a, b), with both ends unmerged: one pass
over the pairs in that order, skipping those with a merged end, makes the same merges.

The pass is lazy. Each root a keeps a short list of its best partners b > a in that order; a
heap holds every row's current head. Popping the head merges it (or skips it if b is gone) and
advances the row. A row whose list runs out is refilled from the roots still unmerged: every
pair it already popped has a merged b, so the unmerged partners are exactly the pairs it has
not seen yet. The lists come from a blockwise product of the root features (each pair once),
so no R x R matrix is held and no more than R * CANDIDATES pairs are ever ranked at a time.
"""

from __future__ import annotations

import heapq

import torch
from torch import Tensor

from fpcli.prune.gprune import rank_key

__all__ = ["merge_roots", "depths"]

CANDIDATES = 16  # partners ranked per root at a time
BLOCK_ELEMENTS = 1 << 22  # rows x columns of the root-similarity block computed at once
_EMPTY = -(2**63)  # key of a padding entry (no partner)


def merge_roots(xr: Tensor, merges: int) -> list[tuple[int, int]]:
    """The reference's `merges` root merges, in order, as (a, b) root positions (b joins a).

    xr: [R, D] float32 L2-normalised root features in node order.
    """
    r = xr.shape[0]
    heads = _initial_lists(xr)  # R lists of keys, best first
    alive = [True] * r
    cursor = [0] * r
    heap = [(-(row[0] >> 32), a, _column(row[0])) for a, row in enumerate(heads) if row and row[0] != _EMPTY]
    heapq.heapify(heap)
    done: list[tuple[int, int]] = []
    while len(done) < merges:
        _, a, b = heapq.heappop(heap)
        if not alive[a]:
            continue  # a was merged away after this entry was pushed: its row is dead
        if alive[b]:
            alive[b] = False
            done.append((a, b))
        cursor[a] += 1
        if cursor[a] == len(heads[a]):
            heads[a], cursor[a] = _refill(xr, a, alive), 0
        row = heads[a]
        if cursor[a] < len(row) and row[cursor[a]] != _EMPTY:
            key = row[cursor[a]]
            heapq.heappush(heap, (-(key >> 32), a, _column(key)))
    return done


def _column(key: int) -> int:
    return 2**32 - 1 - (key & 0xFFFFFFFF)


def _initial_lists(xr: Tensor) -> list[list[int]]:
    """Per root a, the keys of its CANDIDATES best partners b > a (similarity desc, b asc)."""
    r = xr.shape[0]
    lists: list[list[int]] = []
    rows = max(1, BLOCK_ELEMENTS // max(r, 1))
    for a0 in range(0, r, rows):
        a1 = min(r, a0 + rows)
        sim = xr[a0:a1] @ xr[a0:].T  # [B, R - a0]: only partners after the block's first row
        sim[:, : a1 - a0].masked_fill_(_not_after(a1 - a0, xr.device), float("-inf"))
        lists.extend(_best_partners(sim, a0))
    return lists


def _not_after(b: int, device: torch.device) -> Tensor:
    index = torch.arange(b, device=device)
    return index[None, :] <= index[:, None]  # [B, B] column not after the row


def _best_partners(sim: Tensor, a0: int) -> list[list[int]]:
    """Keys of each row's CANDIDATES best columns (column index offset a0), exact under ties.

    A float top-k picks the set quickly; where values tie at its boundary (or a row has fewer
    real partners), which tied columns it picks is unspecified, so those rows are re-ranked
    on keys that are unique by construction."""
    kk = min(CANDIDATES, sim.shape[1])
    values, index = sim.topk(kk, dim=1)  # [B, kk]
    cols = index + a0
    keys = rank_key(values, cols)
    keys = torch.where(values > float("-inf"), keys, _EMPTY).sort(dim=1, descending=True).values
    loose = ((sim >= values[:, -1:]).sum(dim=1) > kk).nonzero().squeeze(1)  # rows with boundary ties
    if loose.numel():
        all_cols = torch.arange(a0, a0 + sim.shape[1], device=sim.device)
        exact = rank_key(sim[loose], all_cols)
        exact = torch.where(sim[loose] > float("-inf"), exact, _EMPTY)
        keys[loose] = exact.topk(kk, dim=1).values
    return keys.tolist()


def _refill(xr: Tensor, a: int, alive: list[bool]) -> list[int]:
    """The next CANDIDATES partners of root a among the unmerged roots after it."""
    later = torch.tensor(alive[a + 1 :], dtype=torch.bool).nonzero().squeeze(1).to(xr.device) + a + 1
    if later.numel() == 0:
        return []
    sim = xr[later] @ xr[a]  # [L]
    return rank_key(sim, later).topk(min(CANDIDATES, later.numel())).values.tolist()


def depths(parent: Tensor) -> Tensor:
    """Depth of every node from parent links (-1 = root) by pointer jumping: [M] -> [M].

    O(M log depth) vectorised steps instead of the reference's per-node loop; parents need
    not precede children.
    """
    depth = (parent >= 0).long()  # [M] distance to `up`
    up = parent.clone()  # [M] ancestor `depth` levels up, -1 once past the root
    while bool((up >= 0).any()):
        has = up >= 0
        safe = up.clamp(min=0)
        depth = torch.where(has, depth + depth[safe], depth)
        up = torch.where(has, up[safe], up)
    return depth
