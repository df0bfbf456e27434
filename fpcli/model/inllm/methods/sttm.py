"""STTM (Hyun et al., 2025; HYUNJS/STTM): spatio-temporal quadtree token merging at one LLM layer.

At the input of layer `layer` the visual hidden states [T, H, W, D] are merged in two steps, as the authors'
`quadtree_build_video` and `cross_frame_node_merging_fast` do:
1. Spatial: a per-frame pyramid of 2x2 average pools (odd sides pool the first row/column on its own, as the
   authors' `avgpool_to_even_side_feature`), read from the root level down; a node whose every child has cosine
   similarity >= tau_s with it becomes one token (its pooled feature), the others split into their children.
2. Temporal: nodes of consecutive frames whose regions contain one another and whose cosine similarity is
   >= tau_t are joined (union-find, each group represented by its earliest, top-left node); a group's token is
   the plain mean of its nodes' features.
Each surviving token takes the sequence slot and position id of its node's top-left token in its first frame,
so the sequence stays in (t, y, x) order. The thresholds give whatever count they give; to keep the ratio's budget
K = keep_count(ratio, T*H*W), both thresholds are shifted by one common delta, found by bisection, so that the
count is the largest one <= K that the shift reaches (the published thresholds fix how strict space is relative
to time; the authors tune them per dataset for 50% and 30% budgets). A shift moves the count in steps (a node
splitting into four, a chain of frames joining), so it is then brought to exactly K by the method's own score,
cosine similarity: below K, the finest tokens least similar to the merged token that stands for them come back
as tokens of their own (their hidden states as they entered the layer; the merged tokens keep their means);
above K (the tree cannot merge enough, e.g. a root level at the finest grid), the most similar adjacent tokens
(same frame side by side, or the same place in consecutive frames) are joined, in rounds of the most similar
pairs, each round joining at most as many as the count is over K.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fpcli.lazy import torch
from fpcli.model.inllm.registry import UNBOUNDED, InLLMMethod, register_in_llm
from fpcli.prune.options import OptionSpec
from fpcli.prune.registry import keep_count

if TYPE_CHECKING:
    from torch import Tensor

    from fpcli.model.inllm.hooks import LayerInput

SEARCH_STEPS = 24  # bisection steps of the threshold shift: 3 / 2**24 is far below any similarity gap that matters


@dataclass
class Nodes:
    """Merged tokens in (t, y, x) order of their top-left corner (finest-grid coordinates)."""

    features: Tensor  # [M, D]
    tlbr: Tensor  # [M, 5] long: t, y0, x0, y1, x1 (y1, x1 exclusive)
    unit: Tensor  # [M, D] float32 L2-normalised features, for the similarities


def _children(n: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """For a side of n cells, the one or two cells each of the ceil(n/2) coarser cells pools (first, second).

    Even n pairs (0,1), (2,3), ...; odd n keeps cell 0 alone, then (1,2), (3,4), ... (second == first: one child).
    """
    if n % 2 == 0:
        first = torch.arange(0, n, 2, device=device)
        return first, first + 1
    zero = torch.zeros(1, dtype=torch.long, device=device)
    first = torch.cat([zero, torch.arange(1, n, 2, device=device)])
    return first, torch.cat([zero, first[1:] + 1])


class Pyramid:
    """Average-pooled levels of the video, root (coarsest used) first, with each cell's extent on the finest grid."""

    def __init__(self, video: Tensor, root_level: int):  # video [T, H, W, D]
        device = video.device
        h, w = video.shape[1:3]
        sides = [(h, w)]
        while sides[0][0] > 2 and sides[0][1] > 2:  # the authors' pyramid stops at a side of 2
            sides.insert(0, ((sides[0][0] + 1) // 2, (sides[0][1] + 1) // 2))
        root = min(root_level, len(sides) - 1)
        self.features = [video]
        self.rows = [_children(n, device) for n, _ in sides[root + 1 :]]  # rows[l]: level l+1 rows pooled by level l
        self.cols = [_children(n, device) for _, n in sides[root + 1 :]]
        self.row_span = [(torch.arange(h, device=device), torch.arange(1, h + 1, device=device))]
        self.col_span = [(torch.arange(w, device=device), torch.arange(1, w + 1, device=device))]
        for (r0, r1), (c0, c1) in zip(reversed(self.rows), reversed(self.cols)):
            finer = self.features[0]
            rows = (finer[:, r0] + finer[:, r1]) / 2  # [T, h', w, D]; (x + x) / 2 == x for a single child
            self.features.insert(0, (rows[:, :, c0] + rows[:, :, c1]) / 2)
            self.row_span.insert(0, (self.row_span[0][0][r0], self.row_span[0][1][r1]))
            self.col_span.insert(0, (self.col_span[0][0][c0], self.col_span[0][1][c1]))
        # Each cell's cosine similarity with its 4 children (a repeated index repeats a child's similarity, which
        # leaves "all children similar" unchanged): [T, h_l, w_l, 4] per level, computed once for every threshold.
        self.units = [torch.nn.functional.normalize(f.float(), dim=-1, eps=1e-8) for f in self.features]
        self.child_sim = []
        for level, ((r0, r1), (c0, c1)) in enumerate(zip(self.rows, self.cols)):
            parent, finer = self.units[level], self.units[level + 1]
            children = [finer[:, rows][:, :, cols] for rows in (r0, r1) for cols in (c0, c1)]
            self.child_sim.append(torch.stack([(parent * c).sum(-1) for c in children], dim=-1))

    def quadtree(self, tau_s: float) -> Nodes:
        """Per-frame quadtree: stop at a node whose valid children are all >= tau_s similar to it."""
        t_count, h0, w0 = self.features[0].shape[:3]
        device = self.features[0].device
        grid = torch.meshgrid(*(torch.arange(n, device=device) for n in (t_count, h0, w0)), indexing="ij")
        t, a, b = (g.flatten() for g in grid)  # active nodes at the root level
        found: list[tuple[int, Tensor, Tensor, Tensor]] = []
        for level in range(len(self.features) - 1):
            (r0, r1), (c0, c1) = self.rows[level], self.cols[level]
            rr = torch.stack([r0[a], r0[a], r1[a], r1[a]], dim=1)  # [N, 4] child rows
            cc = torch.stack([c0[b], c1[b], c0[b], c1[b]], dim=1)
            two_rows, two_cols = r1[a] != r0[a], c1[b] != c0[b]  # [N]; a single child repeats its index
            valid = torch.stack([torch.ones_like(two_rows), two_cols, two_rows, two_rows & two_cols], dim=1)
            stop = (self.child_sim[level][t, a, b] >= tau_s).all(dim=1)  # [N]
            found.append((level, t[stop], a[stop], b[stop]))
            split = ~stop[:, None] & valid  # [N, 4]
            t, a, b = t[:, None].expand_as(rr)[split], rr[split], cc[split]
        found.append((len(self.features) - 1, t, a, b))
        features = torch.cat([self.features[lv][ts, ys, xs] for lv, ts, ys, xs in found])  # [M, D]
        unit = torch.cat([self.units[lv][ts, ys, xs] for lv, ts, ys, xs in found])
        tlbr = torch.cat(
            [
                torch.stack([ts, self.row_span[lv][0][ys], self.col_span[lv][0][xs], self.row_span[lv][1][ys],
                             self.col_span[lv][1][xs]], dim=1)
                for lv, ts, ys, xs in found
            ]
        )  # [M, 5]
        h, w = self.features[-1].shape[1:3]
        order = (tlbr[:, 0] * h * w + tlbr[:, 1] * w + tlbr[:, 2]).argsort()
        return Nodes(features[order], tlbr[order], unit[order])


def _roots(pairs: Tensor, count: int) -> Tensor:
    """Union-find by minimum index over `pairs` [P, 2]: each node's group representative [count]."""
    rep = torch.arange(count, device=pairs.device)
    while True:
        low = torch.minimum(rep[pairs[:, 0]], rep[pairs[:, 1]])
        rep = rep.scatter_reduce(0, pairs[:, 0], low, reduce="amin").scatter_reduce(0, pairs[:, 1], low, reduce="amin")
        rep = rep[rep]  # pointer jumping towards the group's minimum
        if torch.equal(rep, rep[rep]) and torch.equal(rep[pairs[:, 0]], rep[pairs[:, 1]]):
            return rep


def _cell_owner(tlbr: Tensor) -> Tensor:
    """The node covering each finest cell, [T, H, W], for nodes that tile every frame (tlbr [M, 5])."""
    frames, h, w = int(tlbr[-1, 0]) + 1, int(tlbr[:, 3].max()), int(tlbr[:, 4].max())
    owner = torch.empty(frames, h, w, dtype=torch.long, device=tlbr.device)
    sizes = torch.stack([tlbr[:, 3] - tlbr[:, 1], tlbr[:, 4] - tlbr[:, 2]], dim=1)  # [M, 2]
    for height, width in torch.unique(sizes, dim=0).tolist():  # a handful of node shapes
        ids = (sizes == sizes.new_tensor([height, width])).all(dim=1).nonzero()[:, 0]
        ys = tlbr[ids, 1, None, None] + torch.arange(height, device=tlbr.device)[:, None]  # [n, height, 1]
        xs = tlbr[ids, 2, None, None] + torch.arange(width, device=tlbr.device)  # [n, 1, width]
        owner[tlbr[ids, 0, None, None], ys, xs] = ids[:, None, None]
    return owner


def temporal_groups(nodes: Nodes, tau_t: float) -> Tensor:
    """Each node's group representative [M]: nodes of consecutive frames whose regions nest and whose similarity
    is >= tau_t are joined, transitively.

    Quadtree cells of one pyramid either nest or are disjoint, so "one contains the other" (the authors' pair
    test) is "they share a finest cell": the pairs are read off the cell-owner maps of consecutive frames.
    """
    count = len(nodes.tlbr)
    owner = _cell_owner(nodes.tlbr)  # [T, H, W]
    keys = (owner[:-1].flatten() * count + owner[1:].flatten()).unique()  # [P] distinct (earlier, later) pairs
    pairs = torch.stack([keys // count, keys % count], dim=1)  # [P, 2]
    pairs = pairs[(nodes.unit[pairs[:, 0]] * nodes.unit[pairs[:, 1]]).sum(-1) >= tau_t]
    if len(pairs) == 0:
        return torch.arange(count, device=nodes.tlbr.device)
    return _roots(pairs, count)


def merge_groups(nodes: Nodes, rep: Tensor) -> Nodes:
    """One token per group: the plain mean of its nodes' features, at its representative (smallest) node."""
    feats = nodes.features.float()
    sums = torch.zeros_like(feats).index_add_(0, rep, feats)
    counts = torch.bincount(rep, minlength=len(feats))
    alive = counts > 0
    merged = sums[alive] / counts[alive, None]
    unit = torch.nn.functional.normalize(merged, dim=-1, eps=1e-8)
    return Nodes(merged.to(nodes.features.dtype), nodes.tlbr[alive], unit)


def temporal_merge(nodes: Nodes, tau_t: float) -> Nodes:
    """STTM's temporal step: `merge_groups` of `temporal_groups`."""
    return merge_groups(nodes, temporal_groups(nodes, tau_t))


def _cell_pairs(group: Tensor) -> Tensor:
    """Distinct pairs (low, high) [P, 2] of groups that own adjacent cells of group [T, H, W] (side by side in a
    frame, or the same cell of consecutive frames)."""
    pairs = torch.cat([
        torch.stack([group[:, :, :-1].flatten(), group[:, :, 1:].flatten()], dim=1),
        torch.stack([group[:, :-1].flatten(), group[:, 1:].flatten()], dim=1),
        torch.stack([group[:-1].flatten(), group[1:].flatten()], dim=1),
    ])
    pairs = pairs[pairs[:, 0] != pairs[:, 1]].sort(dim=1).values
    count = int(group.max()) + 1
    keys = (pairs[:, 0] * count + pairs[:, 1]).unique()
    return torch.stack([keys // count, keys % count], dim=1)


def _group_units(nodes: Nodes, rep: Tensor) -> Tensor:
    """The L2-normalised mean feature of each group at its representative's row, [M, D] float32."""
    sums = torch.zeros_like(nodes.features, dtype=torch.float32).index_add_(0, rep, nodes.features.float())
    return torch.nn.functional.normalize(sums, dim=-1, eps=1e-8)


def join_most_similar(nodes: Nodes, rep: Tensor, k: int) -> Tensor:
    """Groups `rep` [M] joined down to k: in rounds, the most similar adjacent pairs of groups, as many as the count
    is still over k (a pair whose groups an earlier pair of the round already joined counts for nothing, so no round
    goes below k). The cells form one connected grid, so every round joins at least one pair."""
    group_of_cell = _cell_owner(nodes.tlbr)  # [T, H, W] node ids, mapped to groups each round
    ids = torch.arange(len(rep), device=rep.device)
    over = int((rep == ids).sum()) - k
    while over > 0:
        pairs = _cell_pairs(rep[group_of_cell])  # [P, 2]
        unit = _group_units(nodes, rep)
        sim = (unit[pairs[:, 0]] * unit[pairs[:, 1]]).sum(-1)  # [P]
        rep = _roots(pairs[sim.topk(min(over, len(sim))).indices], len(rep))[rep]
        over = int((rep == ids).sum()) - k
    return rep


def split_least_similar(video: Tensor, nodes: Nodes, rep: Tensor, merged: Nodes, missing: int) -> Nodes:
    """`merged` plus the `missing` finest tokens of video [T, H, W, D] least similar to the group that stands for
    them, each a token of its own at its own slot (a group's own slot is never taken), in (t, y, x) order."""
    h, w, dim = video.shape[1:]
    cells = video.reshape(-1, dim)  # [T*H*W, D]
    cell_unit = torch.nn.functional.normalize(cells.float(), dim=-1, eps=1e-8)
    group = rep[_cell_owner(nodes.tlbr)].flatten()  # [T*H*W]
    sim = (cell_unit * _group_units(nodes, rep)[group]).sum(-1)  # [T*H*W]
    slots = merged.tlbr[:, 0] * h * w + merged.tlbr[:, 1] * w + merged.tlbr[:, 2]  # [M'] the groups' slots
    sim[slots] = float("inf")
    pick = sim.topk(missing, largest=False).indices  # [missing]
    t, y, x = pick // (h * w), pick // w % h, pick % w
    added = torch.stack([t, y, x, y + 1, x + 1], dim=1)
    tlbr = torch.cat([merged.tlbr, added])
    order = torch.cat([slots, pick]).argsort()
    return Nodes(torch.cat([merged.features, cells[pick]])[order], tlbr[order],
                 torch.cat([merged.unit, cell_unit[pick]])[order])


def sttm_nodes(video: Tensor, k: int, *, tau_s: float, tau_t: float, root_level: int) -> Nodes:
    """STTM's merged tokens of video [T, H, W, D]: exactly k, the thresholds shifted to the largest count <= k
    reached, then split or joined by similarity to k (see the module docs)."""
    pyramid = Pyramid(video, root_level)

    def run(shift: float) -> tuple[Nodes, Tensor, int]:
        nodes = pyramid.quadtree(tau_s - shift)
        rep = temporal_groups(nodes, tau_t - shift)
        return nodes, rep, int((rep == torch.arange(len(rep), device=rep.device)).sum())

    low, high = max(tau_s, tau_t) - 1.5, min(tau_s, tau_t) + 1.5  # nothing merges at low, everything at high
    best = run(0.0)
    if best[2] > k:
        low = 0.0
        best = run(high)
        if best[2] > k:  # even merging everything the tree allows leaves more than k
            nodes, rep, _ = best
            return merge_groups(nodes, join_most_similar(nodes, rep, k))
    else:
        high = 0.0
    for _ in range(SEARCH_STEPS):  # invariant: count(low) > k >= count(high) = best's count
        mid = (low + high) / 2
        trial = run(mid)
        if trial[2] <= k:
            high, best = mid, trial
        else:
            low = mid
    nodes, rep, count = best
    merged = merge_groups(nodes, rep)
    return merged if count == k else split_least_similar(video, nodes, rep, merged, k - count)


class STTM:
    def __init__(self, ratio: float, *, layer: int, tau_s: float, tau_t: float, root_level: int, grid: tuple[int, int]):
        self.ratio = ratio
        self.layer = layer
        self.tau_s, self.tau_t, self.root_level = tau_s, tau_t, root_level
        self.grid = grid

    def reduce(self, step: LayerInput) -> tuple[Tensor, Tensor] | None:
        if step.index != self.layer:
            return None
        visual = step.visual
        slots = (visual >= 0).nonzero()[:, 0]  # [V] in (t, y, x) order
        h, w = self.grid
        video = step.hidden[0, slots].view(-1, h, w, step.hidden.shape[-1])  # [T, H, W, D]
        k = keep_count(self.ratio, len(slots))
        nodes = sttm_nodes(video, k, tau_s=self.tau_s, tau_t=self.tau_t, root_level=self.root_level)
        corner = slots[nodes.tlbr[:, 0] * h * w + nodes.tlbr[:, 1] * w + nodes.tlbr[:, 2]]  # [M] sequence slots
        hidden = step.hidden.clone()
        hidden[0, corner] = nodes.features
        keep = visual < 0
        keep[corner] = True
        return keep.nonzero()[:, 0], hidden

    def observe(self, step: LayerInput) -> None:
        return None


register_in_llm(InLLMMethod(
    name="sttm",
    summary="merges the visual hidden states by a spatial quadtree and across frames at one layer's input",
    options=(
        OptionSpec("layer", 2, int, (0, UNBOUNDED), "decoder layer at whose input the tokens are merged",
                   high_open=True),
        OptionSpec("tau_s", 0.85, float, (-1.0, 1.0), "spatial (quadtree) similarity threshold"),
        OptionSpec("tau_t", 0.6, float, (-1.0, 1.0), "temporal (cross-frame node) similarity threshold"),
        OptionSpec("root_level", 1, int, (0, UNBOUNDED), "pyramid level the quadtree starts from (0: 2x2)",
                   high_open=True),
    ),
    layer_options=("layer",),
    build=lambda ratio, plan, **options: STTM(ratio, grid=plan.grid, **options),
))
