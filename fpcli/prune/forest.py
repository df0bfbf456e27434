"""ForestPrune: keep the roots and shallow levels of a forest of temporally linked tokens.

The method, as the authors' released code implements it (docs/forestprune.md has the details):
1. per frame, G-Prune picks the nodes (the frame's most representative tokens);
2-4. frame by frame, each node joins the tree of its most similar, spatially close node in an
   earlier frame, or starts a new tree (forest_build.py);
5. while there are more roots than tokens to keep, the most similar pair of roots is merged
   (forest_merge.py);
6. the K shallowest nodes are kept, earliest frames first: a token that starts something new
   survives, a token that repeats what an earlier frame showed goes first.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fpcli.prune.builtin import NODE_RATIO, TAU_P, TAU_S
from fpcli.prune.forest_build import link_nodes
from fpcli.prune.forest_merge import depths, merge_roots
from fpcli.prune.gprune import gprune_scores, ranked_tokens
from fpcli.prune.registry import Selection, register_method

__all__ = ["Forest", "ForestSummary", "build_forest", "keep_shallowest", "nodes_per_frame", "select"]


@dataclass
class ForestSummary:
    """Counts for reports: nodes, trees built, roots before/after merging, nodes per depth."""

    nodes: int
    trees: int
    roots_before: int
    roots_after: int
    depth_histogram: list[int]  # [d] = number of nodes at depth d

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class Forest:
    """The forest ForestPrune selected from. Nodes are in node order: frame-major, then
    ascending position; parents always come earlier in that order."""

    token: Tensor  # LongTensor [M] flat token index frame*N + row*W + col
    parent: Tensor  # LongTensor [M] node index of the parent, -1 for a root (after merging)
    depth: Tensor  # LongTensor [M] after merging
    tree: Tensor  # LongTensor [M] tree the node joined while building (step 3), in creation order
    frame: Tensor  # LongTensor [M]
    roots_before: int  # roots after building, i.e. trees
    roots_after: int  # roots after merging

    def summary(self) -> ForestSummary:
        return ForestSummary(
            nodes=int(self.token.numel()),
            trees=self.roots_before,
            roots_before=self.roots_before,
            roots_after=self.roots_after,
            depth_histogram=torch.bincount(self.depth).tolist() if self.depth.numel() else [],
        )


def nodes_per_frame(n: int, t: int, k: int, node_ratio: float) -> int:
    """round(N * node_ratio) nodes per frame, but never fewer than K needs, nor more than N."""
    return min(n, max(round(n * node_ratio), math.ceil(k / t)))


def build_forest(
    features: Tensor,
    grid: tuple[int, int],
    k: int,
    tau_s: float = TAU_S.default,
    tau_p: float = TAU_P.default,
    node_ratio: float = NODE_RATIO.default,
) -> Forest:
    """Steps 1-5: the merged forest for keeping k tokens of features [T, N, D]."""
    t, n, _ = features.shape
    device = features.device
    per_frame = nodes_per_frame(n, t, k, node_ratio)
    positions = ranked_tokens(gprune_scores(features))[:, :per_frame].sort(dim=1).values  # [T, n]
    node_pos = positions.reshape(-1)  # [M] node order: frame-major, ascending position
    node_frame = torch.arange(t, device=device).repeat_interleave(per_frame)  # [M]

    # Rows sorted by (position, frame) so each position's nodes are one contiguous block.
    order = (node_pos * t + node_frame).argsort()  # [M] node index of each row
    xp = F.normalize(features[node_frame[order], node_pos[order]].float(), dim=-1)  # [M, D]
    links = link_nodes(xp, order, node_pos, node_frame, grid, tau_s, tau_p)

    parent, depth = links.parent, links.depth
    roots = (parent < 0).nonzero().squeeze(1)  # [R] node indices, ascending
    roots_before = roots.numel()
    if roots_before > k:
        row_of = order.argsort()  # [M] row of xp holding each node
        merges = merge_roots(xp[row_of[roots]], roots_before - k)
        a, b = torch.tensor(merges, dtype=torch.long, device=device).T
        parent = parent.clone()
        parent[roots[b]] = roots[a]
        depth = depths(parent)
    return Forest(
        token=node_frame * n + node_pos,
        parent=parent,
        depth=depth,
        tree=links.tree,
        frame=node_frame,
        roots_before=roots_before,
        roots_after=min(roots_before, k),
    )


def keep_shallowest(forest: Forest, k: int) -> Tensor:
    """Step 6: the k nodes of smallest (depth, frame), ties in node order: [k] node indices."""
    m = forest.depth.numel()
    key = forest.depth * m + torch.arange(m, device=forest.depth.device)  # node order is frame-major
    return key.topk(k, largest=False).indices


@register_method("forestprune")
def select(features: Tensor, grid: tuple[int, int], k: int, *, tau_s: float, tau_p: float, node_ratio: float
           ) -> Selection:
    """ForestPrune; its options (tau_s, tau_p, node_ratio), their defaults and ranges are declared in
    fpcli.prune.builtin and checked by the registry before this runs."""
    forest = build_forest(features, grid, k, tau_s=tau_s, tau_p=tau_p, node_ratio=node_ratio)
    return Selection(keep=forest.token[keep_shallowest(forest, k)], forest=forest)
