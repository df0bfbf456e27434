"""Trees: ForestPrune's deepest spatial-temporal trees marked on the frames they span (the paper's Figure 5a).

ForestPrune links each node (a frame's representative token) to a similar, close node of an earlier frame; the
nodes linked that way form a tree, and roots are merged while there are more than tokens to keep (fpcli.prune.forest).
A tree here is everything under one root after merging. The N deepest trees are drawn in one colour each: every
node as a marker on its patch, a line from each node to its parent (or, where the parent's cell is not drawn, its
nearest drawn ancestor). Roots are squares, the other kept nodes (the trunk) filled discs, and the nodes pruning
dropped (the deep leaves) hollow rings (dark inside). The legend gives each tree's depth and the frames it spans.

The cells drawn are one row of at most MAX_COLUMNS, spread over the cells the drawn trees span.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from fpcli.viz import MAX_TREES
from fpcli.viz.cells import (
    BACKGROUND,
    CANVAS_WIDTH,
    LINE_HEIGHT,
    MAX_COLUMNS,
    MUTED_TEXT,
    TEXT_COLOUR,
    ClipPicture,
    font,
    patch_centres,
    sheet,
    shown_cells,
    thumbnail,
)

TREE_COLOURS = (  # one per tree drawn (MAX_TREES); distinct on dimmed video
    (255, 80, 80), (80, 170, 255), (255, 210, 60), (90, 230, 120), (230, 110, 255),
    (255, 150, 40), (60, 230, 230), (255, 120, 190), (190, 230, 70), (245, 245, 245),
)
FRAME_BRIGHTNESS = 0.45  # the frames are dimmed under the markers
ROOT_HALF = 5  # half the side of a root's square
NODE_RADIUS = 4  # trunk discs and leaf rings
OUTLINE = (16, 16, 16)  # around squares and discs; inside rings (hollow: the links end at their edge)


@dataclass(frozen=True)
class TreeNodes:
    """A forest's nodes in node order (parents come first), as ForestPrune's `Forest` holds them after merging."""

    token: np.ndarray  # [M] flat token cell*N + row*W + col
    parent: np.ndarray  # [M] node index of the parent, -1 for a root
    depth: np.ndarray  # [M] edges from the root

    @classmethod
    def of(cls, forest) -> TreeNodes:
        """From a fpcli.prune.forest.Forest (tensors on any device)."""
        return cls(*(getattr(forest, name).cpu().numpy() for name in ("token", "parent", "depth")))


@dataclass(frozen=True)
class Tree:
    """The nodes under one root."""

    root: int  # node index
    nodes: np.ndarray  # [n] node indices, ascending (node order)
    depth: int  # of its deepest node


def root_of(parent: np.ndarray) -> np.ndarray:
    """The root of every node, by pointer jumping (log depth passes): [M]."""
    up = np.where(parent < 0, np.arange(len(parent)), parent)  # a root points at itself
    while True:
        jumped = up[up]
        if np.array_equal(jumped, up):
            return up
        up = jumped


def deepest_trees(nodes: TreeNodes, count: int) -> list[Tree]:
    """The `count` deepest trees, deepest first (ties: more nodes first, then the earlier root)."""
    trees, slot = np.unique(root_of(nodes.parent), return_inverse=True)  # [R] roots; [M] tree of each node
    depth = np.zeros(len(trees), dtype=np.int64)
    np.maximum.at(depth, slot, nodes.depth)
    size = np.bincount(slot, minlength=len(trees))
    order = np.lexsort((trees, -size, -depth))[:count]
    return [Tree(int(trees[i]), np.flatnonzero(slot == i), int(depth[i])) for i in order]


def nearest_drawn_ancestor(parent: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """For each node, its nearest ancestor whose cell is drawn (drawn [M] bool), -1 when there is none: [M]."""
    up = parent.copy()
    while True:
        climb = (up >= 0) & ~drawn[np.maximum(up, 0)]
        if not climb.any():
            return up
        up = np.where(climb, parent[np.maximum(up, 0)], up)


def draw_trees(clip: ClipPicture, nodes: TreeNodes, keep: np.ndarray, count: int) -> Image.Image:
    """The `count` deepest trees on the cells they span; keep [K]: the flat tokens the method kept."""
    trees = deepest_trees(nodes, min(count, MAX_TREES))
    cell_of = np.asarray(nodes.token) // clip.per_cell  # [M]
    members = np.concatenate([tree.nodes for tree in trees])
    first, last = int(cell_of[members].min()), int(cell_of[members].max())
    shown = first + shown_cells(last - first + 1, MAX_COLUMNS)  # [S] cells drawn
    layout = sheet(len(shown), clip.aspect)
    size = (layout.thumb_w, layout.thumb_h)
    top = LINE_HEIGHT
    legend_rows = -(-len(trees) // 2)
    legend_top = top + layout.height(len(shown)) + 4
    canvas = Image.new("RGB", (CANVAS_WIDTH, legend_top + legend_rows * LINE_HEIGHT + 6), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    roots_after = int((np.asarray(nodes.parent) < 0).sum())
    draw.text((4, 2), f"forestprune · the {len(trees)} deepest of {roots_after} trees · square: root, disc: kept "
                      f"(trunk), ring: pruned (leaf)", fill=TEXT_COLOUR, font=font())
    for slot, cell in enumerate(shown):
        x, y = layout.origin(slot, top)
        thumb = thumbnail(clip.frames[clip.frame_of(cell)], size)
        canvas.paste(Image.fromarray((thumb * FRAME_BRIGHTNESS).astype(np.uint8)), (x, y))
        draw.text((x + 2, y + layout.thumb_h + 2), clip.label(cell), fill=TEXT_COLOUR, font=font())

    slot_of = np.full(clip.cells, -1)
    slot_of[shown] = np.arange(len(shown))
    drawn = slot_of[cell_of] >= 0  # [M]
    at = np.zeros((len(cell_of), 2), dtype=int)  # [M, 2] pixel of each drawn node
    origins = np.array([layout.origin(slot, top) for slot in range(len(shown))])  # [S, 2]
    at[drawn] = origins[slot_of[cell_of[drawn]]] + patch_centres(np.asarray(nodes.token)[drawn] % clip.per_cell,
                                                                  clip.grid, size)
    link = nearest_drawn_ancestor(np.asarray(nodes.parent), drawn)  # [M]
    is_kept = np.isin(nodes.token, keep)  # [M]
    for index, tree in enumerate(trees):
        colour = TREE_COLOURS[index]
        for node in tree.nodes[drawn[tree.nodes] & (link[tree.nodes] >= 0)]:
            draw.line((*at[link[node]], *at[node]), fill=colour, width=2)
    for index, tree in enumerate(trees):
        colour = TREE_COLOURS[index]
        for node in tree.nodes[drawn[tree.nodes]]:
            x, y = at[node]
            if nodes.parent[node] < 0:
                draw.rectangle((x - ROOT_HALF, y - ROOT_HALF, x + ROOT_HALF, y + ROOT_HALF), fill=colour,
                               outline=OUTLINE)
            elif is_kept[node]:
                draw.ellipse((x - NODE_RADIUS, y - NODE_RADIUS, x + NODE_RADIUS, y + NODE_RADIUS), fill=colour,
                             outline=OUTLINE)
            else:
                draw.ellipse((x - NODE_RADIUS, y - NODE_RADIUS, x + NODE_RADIUS, y + NODE_RADIUS), fill=OUTLINE,
                             outline=colour, width=2)
    for index, tree in enumerate(trees):
        x = 4 + (index % 2) * CANVAS_WIDTH // 2
        y = legend_top + (index // 2) * LINE_HEIGHT
        draw.rectangle((x, y + 3, x + 10, y + 13), fill=TREE_COLOURS[index])
        draw.text((x + 16, y + 1), tree_legend(clip, tree, cell_of, is_kept), fill=MUTED_TEXT, font=font())
    return canvas


def tree_legend(clip: ClipPicture, tree: Tree, cell_of: np.ndarray, is_kept: np.ndarray) -> str:
    """'depth 3 · frames 2-7 (00:01-00:06) · 9 nodes, 4 kept': what the legend says of a tree (frames 1-based)."""
    cells = cell_of[tree.nodes]
    first, last = int(cells.min()), int(cells.max())
    first_frame = clip.frame_of(first) + 1
    last_frame = min(clip.frame_of(last) + clip.group, len(clip.frames))
    start, end = clip.label(first).split()[-1], clip.label(last).split()[-1]
    times = start if start == end else f"{start}-{end}"
    frames = f"frame {first_frame}" if first_frame == last_frame else f"frames {first_frame}-{last_frame}"
    return (f"depth {tree.depth} · {frames} ({times}) · {len(tree.nodes)} nodes, "
            f"{int(is_kept[tree.nodes].sum())} kept")
