"""ForestPrune steps 2-4: link each frame's nodes to trees of similar nodes in earlier frames.

A node x of frame t joins the tree holding its best feasible match y among all earlier-frame
nodes (feasible: cos >= tau_s and Chebyshev distance of the normalised grid coordinates
<= 1 - tau_p), ties to the smaller distance, then to the lower tree id. Taking the best match
over all nodes is the same as the per-tree maximum the description uses: the winning tree's
score is the best match, and a tree ties exactly when one of its members ties with it.

The similarity work is split in two:
1. Matching (parallel, the expensive part). Only node pairs whose grid positions lie within
   the spatial window can be feasible, so nodes are grouped by position, and position p's
   block is `X_p @ X_cols^T` with the nodes at the window positions q >= p as columns. A block
   serves both directions (queries at p against earlier nodes at q, and queries at q > p
   against earlier nodes at p), so every node pair is multiplied once. It leaves, per query
   and per window slot (a position of the query's window), the best feasible similarity
   there, how many candidates reach it and one of them.
   Exact ties (repeated frames) are resolved by recomputing the blocks that hold them and
   recording which candidates tie, as masks.
2. Linking (sequential over frames, cheap). Tree ids need the tree ids of earlier frames;
   given each node's best candidates that is one scatter per frame. Parent and depth then
   follow from the tree ids alone: a node's parent is the last node (in node order) of its
   tree in an earlier frame, which is the tree's tail as of the end of the previous frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Links", "grid_distance", "link_nodes"]


@dataclass
class Links:
    """Step 3's forest: per node (node order) its parent (-1 for a root), depth and tree id."""

    parent: Tensor  # LongTensor [M]
    depth: Tensor  # LongTensor [M]
    tree: Tensor  # LongTensor [M], trees numbered in order of creation


def grid_distance(grid: tuple[int, int], device: torch.device) -> Tensor:
    """Chebyshev distance between grid positions on coordinates (row/(H-1), col/(W-1)): [N, N].

    float32, computed the way the reference computes it, so window membership near the
    threshold (e.g. 1 - 0.8 against 1/5) is decided identically.
    """
    h, w = grid
    index = torch.arange(h * w, device=device)
    rows = (index // w).float() / max(h - 1, 1)  # [N]
    cols = (index % w).float() / max(w - 1, 1)  # [N]
    return torch.maximum((rows[:, None] - rows[None, :]).abs(), (cols[:, None] - cols[None, :]).abs())


def link_nodes(
    xp: Tensor, order: Tensor, node_pos: Tensor, node_frame: Tensor, grid: tuple[int, int], tau_s: float, tau_p: float
) -> Links:
    """Build the forest of step 3.

    xp: [M, D] float32 L2-normalised node features, rows sorted by (position, frame); order: [M]
    the node index of each row. node_pos, node_frame: [M] position and frame of each node, in
    node order (frame-major, then ascending position). Returns links in node order.
    """
    blocks = _Blocks(xp, node_pos[order], node_frame[order], grid, tau_s, tau_p)
    m, slots = xp.shape[0], blocks.slots
    best = torch.full((m, slots), float("-inf"), device=xp.device)  # [M, J] best similarity per slot
    ties = torch.zeros((m, slots), dtype=torch.long, device=xp.device)  # candidates reaching it
    which = torch.full((m, slots), -1, dtype=torch.long, device=xp.device)  # one of them (row of xp)
    for p in blocks.positions:
        blocks.reduce(p, best, ties, which)

    # Per query: best similarity over slots, then the smallest distance among slots reaching it.
    top = best.max(dim=1).values  # [M]
    matched = top > float("-inf")
    slot_dist = blocks.slot_dist[blocks.pos]  # [M, J]
    reach = (best == top[:, None]) & matched[:, None]  # [M, J]
    near = torch.where(reach, slot_dist, float("inf")).min(dim=1).values  # [M]
    win = reach & (slot_dist == near[:, None])  # [M, J] winning slots
    count = (ties * win).sum(dim=1)  # [M] candidates with the best (similarity, distance)
    unique = matched & (count == 1)
    cand_x = unique.nonzero().squeeze(1)  # rows of xp
    cand_y = which[cand_x, win[cand_x].long().argmax(dim=1)]
    tied = count > 1
    records = _Ties(order, m)
    if bool(tied.any()):  # exact ties (duplicated content): which candidates tie, as row masks
        tied_win = win & tied[:, None]
        for p in blocks.positions:
            blocks.tied(p, top, tied_win, records)
    return _trees(order[cand_x], order[cand_y], order[matched], node_frame, records)


class _Ties:
    """Tied candidates of tied queries, compactly: per (query, winning slot) the first row of xp
    holding the slot position's nodes and a mask over those rows (its candidates). Listing
    (query, candidate) pairs instead would grow with T^2 per position on repeated frames."""

    def __init__(self, order: Tensor, m: int):
        self.order, self.m = order, m
        self.parts: list[tuple[Tensor, Tensor, Tensor]] = []

    def add(self, query_rows: Tensor, first_row: int, mask: Tensor) -> None:
        """query_rows: [r] rows of xp; mask: [r, n] over rows first_row .. first_row + n - 1."""
        if query_rows.numel():
            self.parts.append((query_rows, torch.full_like(query_rows, first_row), mask))

    def by_query(self) -> tuple[Tensor, Tensor, Tensor]:
        """(query nodes [P], first rows [P], masks [P, L]), sorted by query node."""
        device = self.order.device
        if not self.parts:
            empty = torch.empty(0, dtype=torch.long, device=device)
            return empty, empty, torch.empty(0, 1, dtype=torch.bool, device=device)
        width = max(mask.shape[1] for _, _, mask in self.parts)
        query = torch.cat([self.order[q] for q, _, _ in self.parts])  # [P]
        first = torch.cat([f for _, f, _ in self.parts])  # [P]
        mask = torch.cat([F.pad(mk, (0, width - mk.shape[1])) for _, _, mk in self.parts])  # [P, L]
        by = query.argsort()
        return query[by], first[by], mask[by]

    def lowest_tree(self, first: Tensor, mask: Tensor, tree: Tensor) -> Tensor:
        """Lowest tree id among each record's candidates: [Q] given first rows [Q], masks [Q, L]."""
        rows = (first[:, None] + torch.arange(mask.shape[1], device=first.device)).clamp(max=self.m - 1)
        return torch.where(mask, tree[self.order[rows]], self.m).min(dim=1).values  # [Q]


class _Blocks:
    """The similarity blocks of the matching pass, one per position p: the nodes at p against
    the nodes at the window positions q >= p, as `X_p @ X_cols^T` [Np, C]. A block serves the
    queries at p (candidates: all its columns) and the queries at q > p (candidates: the nodes
    at p), so each node pair is multiplied once. Per query and window slot it records the best
    feasible similarity, how many candidates reach it and one of them."""

    def __init__(self, xp: Tensor, pos: Tensor, frame: Tensor, grid: tuple[int, int], tau_s: float, tau_p: float):
        device = xp.device
        n = grid[0] * grid[1]
        self.xp, self.pos, self.frame, self.tau_s = xp, pos, frame, tau_s
        dist = grid_distance(grid, device)  # [N, N]
        window = dist <= 1.0 - tau_p  # [N, N] float32 comparison, as the reference
        self.slot = window.long().cumsum(dim=1) - 1  # [N, N] index of q among p's window positions
        self.slots = int(window.sum(dim=1).max())
        self.slot_dist = torch.full((n, self.slots), float("inf"), device=device)  # [N, J]
        p_idx, q_idx = window.nonzero(as_tuple=True)
        self.slot_dist[p_idx, self.slot[p_idx, q_idx]] = dist[p_idx, q_idx]
        counts = torch.bincount(pos, minlength=n).tolist()  # nodes per position
        ends = list(accumulate(counts))
        self.bounds = [(end - count, end) for count, end in zip(counts, ends)]  # rows of xp per position
        self.positions = [p for p in range(n) if counts[p]]
        upper = window.triu().cpu()  # [N, N] window pairs with q >= p
        self.runs = {p: self._runs(upper[p].nonzero().squeeze(1).tolist()) for p in self.positions}

    def _runs(self, qs: list[int]) -> list[tuple[int, int]]:
        """Row ranges of xp holding the nodes at positions qs (consecutive positions are contiguous)."""
        runs: list[tuple[int, int]] = []
        for q in qs:
            q0, q1 = self.bounds[q]
            if runs and runs[-1][1] == q0:
                runs[-1] = (runs[-1][0], q1)
            elif q1 > q0:
                runs.append((q0, q1))
        return runs

    def _block(self, p: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        a0, a1 = self.bounds[p]
        rows = self.xp[a0:a1]  # [Np, D]
        sim = torch.cat([rows @ self.xp[c0:c1].T for c0, c1 in self.runs[p]], dim=1)  # [Np, C]
        cols = torch.cat([torch.arange(c0, c1, device=rows.device) for c0, c1 in self.runs[p]])  # [C]
        fp, fc = self.frame[a0:a1], self.frame[cols]
        strong = sim >= self.tau_s
        down = strong & (fc[None, :] < fp[:, None])  # [Np, C] row queries, earlier column candidates
        up = strong & (fp[:, None] < fc[None, :]) & (self.pos[cols] != p)[None, :]  # column queries
        return sim, cols, down, up, self.slot[p][self.pos[cols]], self.slot[self.pos[cols], p]

    def reduce(self, p: int, best: Tensor, ties: Tensor, which: Tensor) -> None:
        a0, a1 = self.bounds[p]
        sim, cols, down, up, slot_down, slot_up = self._block(p)
        index = slot_down.expand_as(sim)  # [Np, C] slot of each column in p's window
        masked = torch.where(down, sim, float("-inf"))
        best[a0:a1].scatter_reduce_(1, index, masked, reduce="amax")
        hit = masked == best[a0:a1].gather(1, index)
        ties[a0:a1].scatter_add_(1, index, hit.long())
        which[a0:a1].scatter_reduce_(1, index, torch.where(hit, cols, -1), reduce="amax")
        masked = torch.where(up, sim, float("-inf"))
        top, arg = masked.max(dim=0)  # [C] best candidate at p of each column query
        ahead = self.pos[cols] != p
        cells = (cols[ahead], slot_up[ahead])
        best.index_put_(cells, top[ahead])
        ties.index_put_(cells, (masked == top).sum(dim=0)[ahead])
        which.index_put_(cells, arg[ahead] + a0)

    def tied(self, p: int, top: Tensor, win: Tensor, records: _Ties) -> None:
        """Add block p's tied candidates of tied queries at their winning slots to `records`.
        Recomputes block p the same way as the first pass, so similarities match bitwise."""
        a0, a1 = self.bounds[p]
        cols = torch.cat([torch.arange(c0, c1, device=self.xp.device) for c0, c1 in self.runs[p]])
        if not bool(win[a0:a1].any() | win[cols].any()):
            return
        sim, cols, down, up, slot_down, slot_up = self._block(p)
        down &= (sim == top[a0:a1, None]) & win[a0:a1].gather(1, slot_down.expand_as(sim))
        up &= (sim == top[cols][None, :]) & win[cols, slot_up][None, :]
        offset = 0
        for c0, c1 in self.runs[p]:  # queries at p: candidates per window position q
            for q in range(int(self.pos[c0]), int(self.pos[c1 - 1]) + 1):
                q0, q1 = self.bounds[q]
                hit = down[:, offset + q0 - c0 : offset + q1 - c0]  # [Np, Nq]
                rows = hit.any(dim=1).nonzero().squeeze(1)
                records.add(rows + a0, q0, hit[rows])
            offset += c1 - c0
        queries = up.any(dim=0).nonzero().squeeze(1)  # column queries: candidates at p
        records.add(cols[queries], a0, up[:, queries].T)


def _trees(x: Tensor, y: Tensor, matched: Tensor, frame: Tensor, ties: _Ties) -> Links:
    """Tree ids, parents and depths from each matched node's best candidates (node order).

    x, y: [P] node x joins the tree of node y (its single best candidate). ties: the
    candidates of the other matched nodes, of which the lowest tree id wins. matched: node
    indices with a feasible match. frame: [M] frame of each node.
    """
    device = frame.device
    m = frame.shape[0]
    is_root = torch.ones(m, dtype=torch.bool, device=device)
    is_root[matched] = False
    tree = torch.where(is_root, is_root.long().cumsum(0) - 1, m)  # roots numbered in node order
    by_x = x.argsort()
    x, y = x[by_x], y[by_x]
    tx, t_first, t_mask = ties.by_query()  # [P'], [P'], [P', L]
    frames = torch.arange(int(frame[-1]) + 2, device=device)
    cut = torch.searchsorted(frame[x], frames).tolist()
    tie_cut = torch.searchsorted(frame[tx], frames).tolist()
    for t in range(1, len(cut) - 1):  # a frame's candidates lie in earlier frames: settle frames in order
        xs, ys = x[cut[t] : cut[t + 1]], y[cut[t] : cut[t + 1]]
        tree.scatter_reduce_(0, xs, tree[ys], reduce="amin")
        if tie_cut[t + 1] > tie_cut[t]:
            span = slice(tie_cut[t], tie_cut[t + 1])
            tree.scatter_reduce_(0, tx[span], ties.lowest_tree(t_first[span], t_mask[span], tree), reduce="amin")

    # Sort nodes by (tree, node). Within a tree a run of nodes of one frame is a level: the
    # root alone first, then each frame the tree gained nodes in. A level's parent is the
    # last node of the level before (the tree's tail then), its depth the level's rank.
    node = torch.arange(m, device=device)
    ranked = (tree * m + node).argsort()
    t_sorted, f_sorted = tree[ranked], frame[ranked]
    new_tree = torch.ones(m, dtype=torch.bool, device=device)
    new_tree[1:] = t_sorted[1:] != t_sorted[:-1]
    new_level = new_tree.clone()
    new_level[1:] |= f_sorted[1:] != f_sorted[:-1]
    level = new_level.long().cumsum(0)  # [M] global level counter
    level_start = torch.where(new_level, node, 0).cummax(0).values  # [M] sorted position of level start
    tree_start = torch.where(new_tree, node, 0).cummax(0).values
    depth_sorted = level - level[tree_start]
    parent_sorted = torch.where(new_tree[level_start], -1, ranked[(level_start - 1).clamp(min=0)])
    parent = torch.empty_like(node)
    depth = torch.empty_like(node)
    parent[ranked] = parent_sorted
    depth[ranked] = depth_sorted
    return Links(parent=parent, depth=depth, tree=tree)
