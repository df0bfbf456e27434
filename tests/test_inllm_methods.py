"""In-LLM methods' algorithms on crafted tensors, against literal references of the authors' steps."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fpcli.model.inllm.registry import in_llm_methods, options_of, validate
from fpcli.model.inllm.methods.fastv import keep_top_visual
from fpcli.model.inllm.methods.framefusion import merge_runs, previous_frame_similarity, remaining_sparsity
from fpcli.model.inllm.methods.sttm import Pyramid, sttm_nodes, temporal_merge


def test_keep_top_visual_keeps_text_and_the_attention_peaks():
    visual = torch.tensor([-1, 0, 1, 2, 3, 4, -1, -1])
    row = torch.tensor([0.9, 0.01, 0.30, 0.02, 0.25, 0.03, 0.1, 0.2])
    assert keep_top_visual(row, visual, 2).tolist() == [0, 2, 4, 6, 7]


def _framefusion_reference(hidden, visual, patches, threshold):
    """The authors' merge, one token at a time: a token similar to its patch's previous token joins that run."""
    previous, head, members = {}, {}, {}  # patch -> last token, patch -> run head, head -> merged tokens
    tokens = [i for i in range(len(visual)) if visual[i] >= 0]
    for index in sorted(tokens, key=lambda i: (int(visual[i]) % patches, i)):
        patch = int(visual[index]) % patches
        if patch in previous and torch.cosine_similarity(hidden[index], hidden[previous[patch]], dim=0) >= threshold:
            members[head[patch]].append(index)
        else:
            head[patch], members[index] = index, []
        previous[patch] = index
    out = hidden.clone()
    for first, merged in members.items():
        if merged:
            out[first] = torch.stack([hidden[first], *(hidden[m] for m in merged)]).mean(0)
    dropped = {m for merged in members.values() for m in merged}
    return out, [i for i in range(len(visual)) if i not in dropped]


def test_framefusion_merge_matches_a_token_by_token_reference():
    generator = torch.Generator().manual_seed(0)
    frames, patches, dim = 4, 6, 8
    video = torch.randn(frames, patches, dim, generator=generator)
    video[1, 0] = video[0, 0]  # a run of three equal tokens at patch 0
    video[2, 0] = video[0, 0] * 2
    video[3, 2] = video[2, 2] + 0.01  # a near duplicate at patch 2
    video[2, 5] = -video[1, 5]  # opposite: never merged
    hidden = torch.cat([torch.randn(2, dim, generator=generator), video.flatten(0, 1), torch.randn(3, dim)])
    visual = torch.cat([torch.full((2,), -1), torch.arange(frames * patches), torch.full((3,), -1)])
    order, sim = previous_frame_similarity(hidden, visual, patches)
    merged = sim >= 0.6
    new_hidden, keep = merge_runs(hidden, order, merged)
    expected_hidden, expected_keep = _framefusion_reference(hidden, visual, patches, 0.6)
    assert keep.tolist() == expected_keep
    assert 2 + 1 * patches + 0 not in keep.tolist() and 2 + 2 * patches + 0 not in keep.tolist()  # merged away
    assert 2 + 3 * patches + 2 not in keep.tolist() and 2 + 2 * patches + 5 in keep.tolist()
    torch.testing.assert_close(new_hidden, expected_hidden)
    torch.testing.assert_close(new_hidden[2], (video[0, 0] * 4) / 3)  # (a + a + 2a) / 3


def test_framefusion_cost_model_matches_the_authors_formula():
    # shares [0.2], cost 0.3, 28 layers: (28*0.3 - 0.8) / (27 * 0.8) of the tokens may stay in the 27 others
    assert remaining_sparsity([0.2], 0.3, 28) == pytest.approx(1 - (8.4 - 0.8) / (27 * 0.8))
    assert remaining_sparsity([], 0.3, 28) == pytest.approx(0.7)
    assert remaining_sparsity([0.5, 0.5], 0.9, 28) == 0.0  # cost above what is left: no pruning needed
    assert remaining_sparsity([0.0], 0.25, 2) == 1.0  # over budget after layer 0: prune all that is allowed


def _quadrant_video(frames=1, side=8, dim=16, seed=0):
    """Random tokens, except a constant top-left quadrant (side/2 x side/2) in every frame."""
    generator = torch.Generator().manual_seed(seed)
    video = torch.randn(frames, side, side, dim, generator=generator)
    video[:, : side // 2, : side // 2] = torch.randn(dim, generator=generator)
    return video


def test_sttm_quadtree_merges_exactly_the_uniform_quadrant():
    video = _quadrant_video()
    nodes = Pyramid(video, root_level=1).quadtree(0.9)  # 8x8 -> levels 4x4 (root) and 8x8
    sizes = (nodes.tlbr[:, 3] - nodes.tlbr[:, 1]) * (nodes.tlbr[:, 4] - nodes.tlbr[:, 2])
    assert len(nodes.features) == 4 + 48  # four 2x2 nodes cover the quadrant, the other 48 tokens stay alone
    big = nodes.tlbr[sizes == 4]
    assert big[:, 1:].tolist() == [[0, 0, 2, 2], [0, 2, 2, 4], [2, 0, 4, 2], [2, 2, 4, 4]]
    corners = nodes.tlbr[:, 1] * 8 + nodes.tlbr[:, 2]
    assert torch.equal(corners, corners.sort().values)  # (t, y, x) order
    root0 = Pyramid(video, root_level=0).quadtree(0.9)  # from the 2x2 level: one node is the whole quadrant
    assert len(root0.features) == 1 + 48 and root0.tlbr[0].tolist() == [0, 0, 0, 4, 4]


def test_sttm_pyramid_pools_odd_sides_like_the_authors():
    video = torch.arange(49, dtype=torch.float32).view(1, 7, 7, 1) + 1
    pyramid = Pyramid(video, root_level=1)  # 7 -> 4 (cells [0], [1,2], [3,4], [5,6]) -> 2
    assert [f.shape[1] for f in pyramid.features] == [4, 7]
    assert pyramid.row_span[0][0].tolist() == [0, 1, 3, 5] and pyramid.row_span[0][1].tolist() == [1, 3, 5, 7]
    assert pyramid.features[0][0, 0, 0, 0] == 1  # the top-left cell alone
    assert pyramid.features[0][0, 0, 1, 0] == (2 + 3) / 2  # first row: 1x2 stripes
    assert pyramid.features[0][0, 1, 1, 0] == (9 + 10 + 16 + 17) / 4  # 2x2 block rows 1-2, cols 1-2
    everything = pyramid.quadtree(-2.0)
    assert len(everything.features) == 16
    nothing = pyramid.quadtree(2.0)
    assert len(nothing.features) == 49 and torch.equal(nothing.features[:, 0], video.flatten())


def test_sttm_temporal_merge_joins_repeated_frames_and_nested_regions():
    video = _quadrant_video(frames=3)
    video[1] = video[0]  # frame 1 repeats frame 0; frame 2 is new except the constant quadrant
    nodes = temporal_merge(Pyramid(video, root_level=1).quadtree(0.9), 0.9)
    per_frame = torch.bincount(nodes.tlbr[:, 0], minlength=3).tolist()
    assert per_frame == [52, 0, 48]  # frame 1 merged into frame 0; frame 2's quadrant joins frame 0's nodes
    torch.testing.assert_close(nodes.features[:52], Pyramid(video[:1], 1).quadtree(0.9).features)


def test_sttm_ends_at_exactly_k():
    video = _quadrant_video(frames=4, seed=1)
    for k in (1, 20, 60, 120, 256):
        assert len(sttm_nodes(video, k, tau_s=0.85, tau_t=0.6, root_level=1).features) == k
    same = video[:1].expand(4, -1, -1, -1)
    merged = sttm_nodes(same, 200, tau_s=0.85, tau_t=0.6, root_level=1)  # all frames alike: a split is needed
    assert len(merged.features) == 200


def test_sttm_splits_the_least_represented_token_back():
    # 4 identical 2x2 frames and a root at the finest grid: only the temporal step merges, into 4 tokens; one cell
    # of frame 3 is slightly off, so it is the one least similar to its group and comes back at k = 5
    video = torch.ones(4, 2, 2, 3)
    video[..., 0] = torch.arange(4.0).view(1, 2, 2) + 1
    video[3, 1, 0, 1] = 1.5
    nodes = sttm_nodes(video, 5, tau_s=0.85, tau_t=0.6, root_level=1)
    assert nodes.tlbr[:, :3].tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1], [3, 1, 0]]
    torch.testing.assert_close(nodes.features[4], video[3, 1, 0])


def test_sttm_joins_the_most_similar_neighbours_when_the_tree_cannot_reach_k():
    # a root at the finest grid of a single 2x2 frame: no merging reaches below 4 tokens; at k = 3 the two most
    # similar neighbours (cells (0, 0) and (0, 1)) join into their mean, at the first one's slot
    video = torch.tensor([[[[1.0, 0.0], [1.0, 0.1]], [[0.0, 1.0], [-1.0, 0.0]]]])  # [1, 2, 2, 2]
    nodes = sttm_nodes(video, 3, tau_s=1.0, tau_t=1.0, root_level=5)
    assert nodes.tlbr[:, :3].tolist() == [[0, 0, 0], [0, 1, 0], [0, 1, 1]]
    torch.testing.assert_close(nodes.features[0], torch.tensor([1.0, 0.05]))


@pytest.mark.parametrize(
    ("method", "options", "name"),
    [
        ("fastv", {"K": 0}, r"K must be an int in \[1, 2\*\*63\), got 0"),
        ("fastv", {"K": 1.5}, r"K must be an int in \[1, 2\*\*63\), got 1.5"),
        ("framefusion", {"S_threshold": 1.5}, r"S_threshold must be a number in \[-1, 1\], got 1.5"),
        ("framefusion", {"N_threshold": -0.1}, r"N_threshold must be a number in \[0, 1\], got -0.1"),
        ("sttm", {"tau_s": "high"}, r"tau_s must be a number in \[-1, 1\], got 'high'"),
        ("sttm", {"root_level": -1}, r"root_level must be an int in \[0, 2\*\*63\), got -1"),
        ("sttm", {"depth": 3},
         "unknown option 'depth' for method 'sttm'; accepted options: layer, tau_s, tau_t, root_level"),
    ],
)
def test_options_out_of_range_name_the_option(method, options, name):
    with pytest.raises(ValueError, match=name):
        validate(0.9, method, **options)


def test_registry_defaults_and_ratio():
    assert tuple(in_llm_methods()) == ("fastv", "flashvid", "framefusion", "holitom", "sttm")  # stages too
    assert validate(0.9, "fastv") == {"K": 2}
    assert validate(0.5, "framefusion") == {"S_threshold": 0.6, "N_threshold": 0.1}
    assert validate(0.5, "sttm", tau_t=0.5) == {"layer": 2, "tau_s": 0.85, "tau_t": 0.5, "root_level": 1}
    assert options_of("sttm")["tau_s"].range == (-1.0, 1.0)
    for bad in (1.0, -0.1, True, "0.9"):
        with pytest.raises(ValueError, match="ratio"):
            validate(bad, "fastv")
    with pytest.raises(ValueError, match="unknown in-LLM method 'tome'"):
        validate(0.9, "tome")


def _pool_groups(n):
    """The authors' odd/even pooling along one side of n cells: [[0, 1], [2, 3], ...] or [[0], [1, 2], ...]."""
    if n % 2 == 0:
        return [[i, i + 1] for i in range(0, n, 2)]
    return [[0]] + [[i, i + 1] for i in range(1, n, 2)]


def _quadtree_reference(frame, tau, root_level):
    """STTM's quadtree for one frame [H, W, D], written cell by cell: the set of (y0, x0, y1, x1) node regions."""
    h, w = frame.shape[:2]
    # one dict per level, finest first: cell -> (rows covered, cols covered, feature, children at the finer level)
    levels = [{(y, x): ([y], [x], frame[y, x], []) for y in range(h) for x in range(w)}]
    while h > 2 and w > 2:
        rows, cols, finer = _pool_groups(h), _pool_groups(w), levels[-1]
        coarser = {}
        for a, row_group in enumerate(rows):
            for b, col_group in enumerate(cols):
                children = [(r, c) for r in row_group for c in col_group]
                row_means = [torch.stack([finer[(r, c)][2] for c in col_group]).mean(0) for r in row_group]
                covered_rows = [y for r in row_group for y in finer[(r, col_group[0])][0]]
                covered_cols = [x for c in col_group for x in finer[(row_group[0], c)][1]]
                coarser[(a, b)] = (covered_rows, covered_cols, torch.stack(row_means).mean(0), children)
        levels.append(coarser)
        h, w = len(rows), len(cols)
    levels.reverse()  # coarsest first
    regions = set()

    def visit(level, cell):
        ys, xs, feature, children = levels[level][cell]
        if children and not all(
            torch.cosine_similarity(feature, levels[level + 1][child][2], dim=0) >= tau for child in children
        ):
            for child in children:
                visit(level + 1, child)
            return
        regions.add((min(ys), min(xs), max(ys) + 1, max(xs) + 1))

    root = min(root_level, len(levels) - 1)
    for cell in levels[root]:
        visit(root, cell)
    return regions


@settings(max_examples=25)
@given(
    side=st.tuples(st.integers(3, 9), st.integers(3, 9)),
    tau=st.sampled_from([0.0, 0.3, 0.6, 0.9]),
    root_level=st.integers(0, 2),
    seed=st.integers(0, 2**16),
)
def test_sttm_quadtree_matches_a_cell_by_cell_reference(side, tau, root_level, seed):
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(4, generator=generator)  # correlated tokens, so that some nodes stop early
    frame = base + 0.7 * torch.randn(*side, 4, generator=generator, dtype=torch.float64)
    nodes = Pyramid(frame[None], root_level).quadtree(tau)
    ours = {tuple(row[1:].tolist()) for row in nodes.tlbr}
    assert ours == _quadtree_reference(frame, tau, root_level)
    area = ((nodes.tlbr[:, 3] - nodes.tlbr[:, 1]) * (nodes.tlbr[:, 4] - nodes.tlbr[:, 2])).sum()
    assert area == side[0] * side[1] and len(ours) == len(nodes.tlbr)  # the nodes tile the frame


@settings(max_examples=25)
@given(
    frames=st.integers(1, 4),
    patches=st.integers(1, 6),
    duplicates=st.lists(st.tuples(st.integers(1, 3), st.integers(0, 5)), max_size=8),
    threshold=st.sampled_from([0.2, 0.6, 0.95]),
    seed=st.integers(0, 2**16),
)
def test_framefusion_merge_matches_the_reference_on_any_duplicates(frames, patches, duplicates, threshold, seed):
    generator = torch.Generator().manual_seed(seed)
    video = torch.randn(frames, patches, 6, generator=generator, dtype=torch.float64)
    for t, p in duplicates:
        if t < frames and p < patches:
            video[t, p] = video[t - 1, p] * 1.5
    hidden = torch.cat([torch.randn(1, 6, dtype=torch.float64), video.flatten(0, 1)])
    visual = torch.cat([torch.tensor([-1]), torch.arange(frames * patches)])
    order, sim = previous_frame_similarity(hidden, visual, patches)
    new_hidden, keep = merge_runs(hidden, order, sim >= threshold)
    expected_hidden, expected_keep = _framefusion_reference(hidden, visual, patches, threshold)
    assert keep.tolist() == expected_keep
    torch.testing.assert_close(new_hidden[keep], expected_hidden[expected_keep])


@settings(max_examples=25)
@given(frames=st.integers(1, 4), side=st.integers(3, 8), keep_share=st.floats(0.05, 1.0), seed=st.integers(0, 99))
def test_sttm_ends_at_exactly_the_budget(frames, side, keep_share, seed):
    video = _quadrant_video(frames=frames, side=side, seed=seed)
    total = frames * side * side
    k = max(1, int(keep_share * total))
    nodes = sttm_nodes(video, k, tau_s=0.85, tau_t=0.6, root_level=1)
    assert len(nodes.features) == k
    corners = nodes.tlbr[:, 0] * side * side + nodes.tlbr[:, 1] * side + nodes.tlbr[:, 2]
    assert torch.equal(corners, corners.unique())  # distinct slots in (t, y, x) order


def _temporal_reference(nodes, tau):
    """The authors' cross-frame merge, pair by pair: nested regions in consecutive frames, cosine >= tau, groups
    joined to their smallest index, each group the mean of its nodes."""
    tlbr, feats = nodes.tlbr.tolist(), nodes.features
    parent = list(range(len(tlbr)))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    def nested(a, b):
        return (a[1] <= b[1] and a[2] <= b[2] and a[3] >= b[3] and a[4] >= b[4]) or (
            b[1] <= a[1] and b[2] <= a[2] and b[3] >= a[3] and b[4] >= a[4]
        )

    for i, a in enumerate(tlbr):
        for j, b in enumerate(tlbr):
            if b[0] == a[0] + 1 and nested(a, b) and torch.cosine_similarity(feats[i], feats[j], dim=0) >= tau:
                low, high = sorted((find(i), find(j)))
                parent[high] = low
    groups = {}
    for i in range(len(tlbr)):
        groups.setdefault(find(i), []).append(i)
    heads = sorted(groups)
    return [tlbr[h] for h in heads], torch.stack([feats[groups[h]].mean(0) for h in heads])


@settings(max_examples=20)
@given(frames=st.integers(1, 4), side=st.integers(3, 7), tau=st.sampled_from([0.2, 0.5, 0.8]), seed=st.integers(0, 999))
def test_sttm_temporal_merge_matches_a_pair_by_pair_reference(frames, side, tau, seed):
    generator = torch.Generator().manual_seed(seed)
    video = torch.randn(1, side, side, 4, generator=generator, dtype=torch.float64)
    video = video + 0.8 * torch.randn(frames, side, side, 4, generator=generator, dtype=torch.float64)
    nodes = Pyramid(video, root_level=1).quadtree(0.5)
    merged = temporal_merge(nodes, tau)
    expected_tlbr, expected_features = _temporal_reference(nodes, tau)
    assert merged.tlbr.tolist() == expected_tlbr
    torch.testing.assert_close(merged.features, expected_features)


@settings(max_examples=40)
@given(
    kinds=st.lists(st.booleans(), min_size=1, max_size=30),
    share=st.floats(0.0, 1.0),
    seed=st.integers(0, 999),
)
def test_keep_top_visual_keeps_k_visual_peaks_and_everything_else(kinds, share, seed):
    if not any(kinds):
        kinds = [*kinds, True]
    visual = torch.tensor([i if is_visual else -1 for i, is_visual in enumerate(kinds)])
    row = torch.rand(len(kinds), generator=torch.Generator().manual_seed(seed))
    candidates = (visual >= 0).nonzero()[:, 0]
    k = max(1, int(share * len(candidates)))
    keep = keep_top_visual(row, visual, k)
    assert torch.equal(keep, keep.unique())
    kept_visual = keep[visual[keep] >= 0]
    assert len(kept_visual) == k and len(keep) - k == int((visual < 0).sum())
    dropped = candidates[~torch.isin(candidates, kept_visual)]
    if len(dropped):
        assert row[kept_visual].min() >= row[dropped].max()
