"""The drawing functions of fpcli.viz on synthetic selections: pixels of kept, dropped and merged patches, the shared
bar scale, long clips, Qwen-VL's groups, tree colours and markers, the HTML report and the files written."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fpcli.viz import output
from fpcli.viz.cells import (
    CANVAS_WIDTH,
    LINE_HEIGHT,
    MAX_CELLS,
    ClipPicture,
    clock,
    patch_border,
    patch_map,
    shown_cells,
    token_colours,
)
from fpcli.viz.report import Figure, Table, page
from fpcli.viz.strips import BAR_COLOUR, BAR_HEIGHT, DIM, MUTED_BAR, Strip, cell_image, draw_strip, draw_strips, stage
from fpcli.viz.trees import (
    FRAME_BRIGHTNESS,
    NODE_RADIUS,
    OUTLINE,
    TREE_COLOURS,
    TreeNodes,
    deepest_trees,
    draw_trees,
    nearest_drawn_ancestor,
    root_of,
    tree_legend,
)

COLOUR = np.array([200, 120, 40], dtype=np.uint8)


def solid_clip(frames: int, grid=(2, 2), group: int = 1, size=(40, 40)) -> ClipPicture:
    """Frames of one colour (frame i a bit brighter in red, to tell them apart), one second apart."""
    pixels = np.broadcast_to(COLOUR, (frames, *size, 3)).copy()
    pixels[:, :, :, 0] = 200 + np.arange(frames)[:, None, None] % 50
    return ClipPicture("clip.mp4", pixels, np.arange(frames, dtype=float), grid, group)


def test_kept_patches_stay_dropped_dim_merged_outlined_in_the_targets_colour():
    # 2x2 grid on a 40x40 thumbnail: patches of 20x20. Token 1 is kept; 0 and 3 merged into it; 2 simply dropped.
    frame = np.broadcast_to(COLOUR, (40, 40, 3)).copy()
    patches = patch_map((2, 2), (40, 40))
    border = patch_border(patches)
    kept = np.array([False, True, False, False])
    outline = np.array([1, 1, -1, 1])  # what outline_colour_index gives: the target outlines itself too
    image = cell_image(frame, kept, outline, patches, border, (40, 40))
    target = token_colours(np.array([1]))[0]
    dim = (COLOUR * DIM).astype(np.uint8)
    assert (image[5:15, 25:35] == COLOUR).all()  # kept patch, inside: untouched
    assert (image[5:15, 5:15] == dim).all() and (image[25:35, 5:15] == dim).all()  # dropped, merged or not: dimmed
    assert (image[0, 0:20] == target).all() and (image[0:20, 19] == target).all()  # merged token 0: its edge
    assert (image[39, 20:40] == target).all()  # merged token 3's bottom edge
    assert (image[0, 20:40] == target).all()  # the target itself
    assert (image[39, 0:20] == dim).all()  # token 2 was dropped, not merged: no outline


def test_strip_draws_each_cell_at_its_place_with_labels():
    clip = solid_clip(2)
    merged = np.full(8, -1)
    merged[[0, 3]] = 1
    strip = Strip("visionzip", np.array([1, 6]), merged_into=merged)
    image = np.asarray(draw_strip(clip, strip, peak=0.5))
    # two cells: one every CANVAS_WIDTH / 4 = 320 pixels, 316 wide (4 between), patches of 158; the first row
    # starts under the header
    top, side = LINE_HEIGHT, CANVAS_WIDTH // 4
    assert image.shape[1] == CANVAS_WIDTH
    assert (image[top + 80, 160 + 80] == clip.frames[0, 0, 0]).all()  # cell 0, token 1 kept
    assert (image[top + 80, 80] == (clip.frames[0, 0, 0] * DIM).astype(np.uint8)).all()  # cell 0, token 0 dimmed
    assert (image[top, 40] == token_colours(np.array([1]))[0]).all()  # merged into token 1: its colour on the edge
    assert (image[top + 240, side + 80] == clip.frames[1, 0, 0]).all()  # cell 1, token 6 = (row 1, col 0) kept
    assert (image[top + 80, side + 240] == (clip.frames[1, 0, 0] * DIM).astype(np.uint8)).all()


def test_bars_of_all_strips_share_one_scale():
    clip = solid_clip(2)
    full = Strip("a", np.array([0, 1, 2, 3]))  # all of cell 0
    half = Strip("b", np.array([0, 1]))  # half of cell 0
    images = [np.asarray(image) for image in draw_strips(clip, [full, half])]
    heights = [int((image[:, 10] == BAR_COLOUR).all(axis=1).sum()) for image in images]
    assert heights == [BAR_HEIGHT, BAR_HEIGHT // 2]
    assert [int((image[:, CANVAS_WIDTH - 10] == BAR_COLOUR).all(axis=1).sum()) for image in images] == [0, 0]


def test_long_clip_draws_at_most_max_cells_and_every_bar():
    assert shown_cells(5).tolist() == [0, 1, 2, 3, 4]
    spread = shown_cells(40)
    assert len(spread) == MAX_CELLS and spread[0] == 0 and spread[-1] == 39 and (np.diff(spread) > 0).all()
    clip = solid_clip(40)
    keep = np.arange(0, 160, 4)  # token 0 of every cell: a quarter of each
    short = draw_strip(solid_clip(16), Strip("m", np.arange(0, 64, 4)), 0.25)
    long = draw_strip(clip, Strip("m", keep), 0.25)
    assert long.size == short.size  # 40 cells take the room of 16
    bars = np.asarray(long)[-LINE_HEIGHT - 6]  # a row through the bars, near their base
    edges = np.round(np.arange(41) * CANVAS_WIDTH / 40).astype(int)
    colours = [tuple(bars[edges[cell] + 2]) for cell in range(40)]
    drawn = set(spread.tolist())
    assert all(colours[cell] == (BAR_COLOUR if cell in drawn else MUTED_BAR) for cell in range(40))


def test_qwen_groups_show_their_first_frame_and_name_their_frames():
    clip = solid_clip(5, group=2)
    assert (clip.cells, clip.tokens) == (3, 12)
    assert [clip.label(cell) for cell in range(3)] == ["f1-2 00:00", "f3-4 00:02", "f5 00:04"]
    image = np.asarray(draw_strip(clip, Strip("uniform", np.arange(12)), peak=1.0))
    side = CANVAS_WIDTH // 4
    assert [image[LINE_HEIGHT + 5, cell * side + 5, 0] for cell in range(3)] == [200, 202, 204]  # frames 0, 2, 4


def test_stage_and_clock():
    assert (stage(0), stage(2)) == ("before the LLM", "at layer 2")
    assert (clock(75.4), clock(3725.0)) == ("01:15", "62:05")


def test_token_colours_are_bright_and_neighbours_differ():
    colours = token_colours(np.arange(64)).astype(int)
    assert tuple(colours[0]) == (255, 80, 80)  # hue 0: red at full saturation, lifted to 80
    assert colours.min() >= 80 and colours.max() <= 255
    assert (np.abs(np.diff(colours, axis=0)).sum(axis=1) > 60).all()


# A forest on 3 frames of a 2x2 grid, in node order (frame-major): tree A 0 -> 2 -> 4 (depth 2, frames 1-3),
# tree B 1 -> 3 (depth 1), tree C a lone root on the last frame.
FOREST = TreeNodes(token=np.array([0, 1, 4, 5, 8, 10]), parent=np.array([-1, -1, 0, 1, 2, -1]),
                   depth=np.array([0, 0, 1, 1, 2, 0]))
KEEP = np.array([0, 1, 4])  # both roots and A's second node; 5 and 8 were pruned


def test_roots_and_deepest_trees():
    assert root_of(FOREST.parent).tolist() == [0, 1, 0, 1, 0, 5]
    trees = deepest_trees(FOREST, 2)
    assert [(tree.root, tree.nodes.tolist(), tree.depth) for tree in trees] == [(0, [0, 2, 4], 2), (1, [1, 3], 1)]
    assert nearest_drawn_ancestor(np.array([-1, 0, 1, 2]), np.array([True, False, False, True])).tolist() == [
        -1, 0, 0, 0]


def test_trees_are_drawn_in_their_colours_with_distinct_markers():
    clip = solid_clip(3)
    image = np.asarray(draw_trees(clip, FOREST, KEEP, 2))
    side = CANVAS_WIDTH // 4  # 3 cells drawn, one every 320 pixels: 316-pixel thumbnails, patch centres 79 and 237
    top = LINE_HEIGHT

    def centre(cell: int, token: int) -> tuple[int, int]:
        row, col = divmod(token, 2)
        return top + 79 + 158 * row, cell * side + 79 + 158 * col

    a, b = TREE_COLOURS[0], TREE_COLOURS[1]
    assert tuple(image[centre(0, 0)]) == a  # root of A: a filled square
    assert tuple(image[centre(0, 0)[0] - 4, centre(0, 0)[1] - 4]) == a
    assert tuple(image[centre(1, 0)]) == a  # A's kept node (trunk): a filled disc
    y, x = centre(2, 0)  # A's pruned leaf: a ring, the frame inside it
    assert tuple(image[y, x + NODE_RADIUS]) == a and tuple(image[y, x]) == OUTLINE
    assert tuple(image[centre(0, 1)]) == b  # root of B
    y, x = centre(1, 1)  # B's pruned leaf
    assert tuple(image[y, x - NODE_RADIUS]) == b and tuple(image[y, x]) == OUTLINE
    assert tuple(image[top + 79, 150]) == a  # on the link from A's root (x 79) to its child (x 399)
    y, x = centre(2, 2)  # tree C is not drawn: the dimmed frame
    assert (image[y, x] == (clip.frames[2, 0, 0] * FRAME_BRIGHTNESS).astype(np.uint8)).all()
    cell_of = FOREST.token // 4
    is_kept = np.isin(FOREST.token, KEEP)
    trees = deepest_trees(FOREST, 2)
    assert tree_legend(clip, trees[0], cell_of, is_kept) == "depth 2 · frames 1-3 (00:00-00:02) · 3 nodes, 2 kept"
    assert tree_legend(clip, trees[1], cell_of, is_kept) == "depth 1 · frames 1-2 (00:00-00:01) · 2 nodes, 1 kept"


class Checker(HTMLParser):
    """Every element closed in order (void elements excepted); the images' sources and the text collected."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.images: list[str] = []
        self.text: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        if not self.open or self.open.pop() != tag:
            self.errors.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def parse(text: str) -> Checker:
    checker = Checker()
    checker.feed(text)
    checker.close()
    assert checker.errors == [] and checker.open == []
    return checker


def test_report_is_well_formed_self_contained_and_escaped():
    figures = [Figure("gprune strip", Image.new("RGB", (30, 20), (1, 2, 3))),
               Figure("<visionzip> & co", Image.new("RGB", (10, 40), (4, 5, 6)))]
    table = Table(("method", "answer"), [("gprune", "a cat"), ("<visionzip>", "x < y & z")], numeric=(False, False))
    text = page("clip.mp4", figures, table, notes=["Question: what?"])
    checker = parse(text)
    assert text.startswith("<!DOCTYPE html>") and "http" not in text and "<script" not in text
    assert text.index("<table>") < text.index("<img")  # the table above the pictures
    body = "".join(checker.text)
    assert "<visionzip>" in body and "x < y & z" in body and "gprune" in body
    assert len(checker.images) == 2
    for source, figure in zip(checker.images, figures):
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix)
        with Image.open(io.BytesIO(base64.b64decode(source[len(prefix):]))) as image:
            assert image.size == figure.image.size and image.getpixel((0, 0)) == figure.image.getpixel((0, 0))


@pytest.mark.parametrize("name", ["out.png", "out.JPG", "deeper/out.webp", "out.html"])
def test_write_by_suffix(tmp_path: Path, name: str):
    figures = [Figure("one", Image.new("RGB", (CANVAS_WIDTH, 30), (9, 9, 9))),
               Figure("two", Image.new("RGB", (CANVAS_WIDTH, 50), (9, 9, 9)))]
    path = output.write(tmp_path / name, "title", figures)
    assert path.is_file()
    if name.endswith(".html"):
        assert len(parse(path.read_text(encoding="utf-8")).images) == 2
        return
    with Image.open(path) as image:
        assert image.format == {".png": "PNG", ".jpg": "JPEG", ".webp": "WEBP"}[path.suffix.lower()]
        assert image.size == (CANVAS_WIDTH, LINE_HEIGHT + 4 + 30 + 50 + 2 * output.GAP)
