"""Every registered method keeps exactly K valid tokens; the non-forest methods select what they promise."""

import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from fpcli.prune import available_methods, divprune, prune
from fpcli.prune.registry import keep_count

RATIOS = st.one_of(st.sampled_from([0.0, 0.5, 0.75, 0.9, 0.999]), st.floats(0.0, 0.999))


@st.composite
def videos(draw):
    """Small [T, N, D] features of small integers (exact in every float dtype) and their grid."""
    t = draw(st.integers(1, 6))
    h = draw(st.integers(1, 4))
    w = draw(st.integers(1, 4))
    d = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(-8, 9, (t, h * w, d), generator=generator).float()
    if draw(st.booleans()):  # a static stretch: frames repeating the previous one
        repeat = torch.rand(t, generator=generator) < 0.5
        for i in range(1, t):
            if repeat[i]:
                x[i] = x[i - 1]
    return x, (h, w)


def extras_of(x):
    """Vision-tower extras for the methods that take them (visionzip), made from the features, float32."""
    return {"vision_attention": x.float().norm(dim=-1), "vision_keys": x.float()}


def check_result(r, x, ratio):
    t, n, _ = x.shape
    k = keep_count(ratio, t * n)
    assert r.k == k
    assert r.keep.shape == (k,) and r.keep.dtype == torch.long
    keep = r.keep.tolist()
    assert keep == sorted(set(keep))
    assert 0 <= keep[0] and keep[-1] < t * n
    assert r.per_frame.tolist() == torch.bincount(r.keep // n, minlength=t).tolist()
    assert int(r.per_frame.sum()) == k


@pytest.mark.parametrize("method", available_methods())
@given(video=videos(), ratio=RATIOS)
def test_exact_k_valid_and_deterministic(method, video, ratio):
    x, grid = video
    if method == "none" and ratio != 0:  # whatever K the shape rounds to: validation is shape-free
        with pytest.raises(ValueError, match="^method 'none' keeps every token; ratio must be 0$"):
            prune(x, grid, ratio, method)
        return
    r = prune(x, grid, ratio, method, extras=extras_of(x))
    check_result(r, x, ratio)
    again = prune(x.clone(), grid, ratio, method, extras=extras_of(x))
    assert torch.equal(r.keep, again.keep)


@pytest.mark.parametrize("method", available_methods())
@pytest.mark.parametrize(("t", "grid"), [(1, (1, 1)), (1, (3, 4)), (5, (1, 1)), (3, (1, 5)), (2, (4, 1))])
@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.999])
def test_edge_shapes(method, t, grid, ratio):
    n = grid[0] * grid[1]
    x = torch.randn(t, n, 3, generator=torch.Generator().manual_seed(t * 31 + n))
    if method == "none" and ratio != 0:
        with pytest.raises(ValueError, match="^method 'none' keeps every token; ratio must be 0$"):
            prune(x, grid, ratio, method)
    else:
        check_result(prune(x, grid, ratio, method, extras=extras_of(x)), x, ratio)


@pytest.mark.parametrize("method", available_methods())
@given(video=videos(), ratio=RATIOS)
def test_selection_does_not_depend_on_the_float_dtype(method, video, ratio):
    x, grid = video
    if method == "none":
        ratio = 0.0
    dtypes = (torch.float32, torch.float16, torch.bfloat16)
    keeps = [prune(x.to(dtype), grid, ratio, method, extras=extras_of(x)).keep for dtype in dtypes]
    assert torch.equal(keeps[0], keeps[1]) and torch.equal(keeps[0], keeps[2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", available_methods())
def test_selection_does_not_depend_on_the_device(method):
    x = torch.randint(-8, 9, (6, 12, 16), generator=torch.Generator().manual_seed(0)).float()
    ratio = 0.0 if method == "none" else 0.7
    cpu = prune(x, (3, 4), ratio, method, extras=extras_of(x))
    cuda = prune(x.cuda(), (3, 4), ratio, method, extras={name: v.cuda() for name, v in extras_of(x).items()})
    assert cuda.keep.device.type == "cuda" and cuda.per_frame.device.type == "cuda"
    assert torch.equal(cpu.keep, cuda.keep.cpu())


# --- none ---------------------------------------------------------------------------------


def test_none_keeps_everything_and_only_at_ratio_0():
    x = torch.randn(3, 4, 2)
    r = prune(x, (2, 2), 0.0, "none")
    assert r.keep.tolist() == list(range(12)) and r.per_frame.tolist() == [4, 4, 4]
    with pytest.raises(ValueError, match="^method 'none' keeps every token; ratio must be 0$"):
        prune(x, (2, 2), 0.5, "none")


# --- uniform ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "cells"),
    [
        (1, [(2, 2)]),
        (2, [(2, 1), (2, 3)]),
        (4, [(1, 1), (1, 3), (3, 1), (3, 3)]),  # a 2 x 2 lattice
        (8, [(0, 0), (0, 2), (0, 3), (2, 1), (2, 3), (3, 0), (3, 2), (3, 3)]),
        (16, [(r, c) for r in range(4) for c in range(4)]),
    ],
)
def test_uniform_pattern_on_a_4x4_grid(k, cells):
    r = prune(torch.randn(1, 16, 2), (4, 4), 1 - k / 16, "uniform")
    assert [divmod(i, 4) for i in r.keep.tolist()] == cells


def test_uniform_same_pattern_every_frame_and_remainder_spread_over_frames():
    r = prune(torch.randn(4, 16, 2), (4, 4), 0.75, "uniform")  # 16 tokens: 4 per frame
    assert r.keep.tolist() == [f * 16 + i for f in range(4) for i in (5, 7, 13, 15)]
    r = prune(torch.randn(3, 16, 2), (4, 4), 1 - 5 / 48, "uniform")  # 5 tokens over 3 frames
    assert r.per_frame.tolist() == [2, 1, 2]
    assert r.keep.tolist() == [9, 11, 16 + 10, 32 + 9, 32 + 11]
    r = prune(torch.randn(8, 4, 2), (2, 2), 1 - 3 / 32, "uniform")  # fewer tokens than frames
    assert r.per_frame.tolist() == [0, 1, 0, 0, 1, 0, 1, 0]


def test_uniform_on_a_wide_grid_spreads_along_the_row():
    r = prune(torch.randn(1, 12, 2), (2, 6), 0.75, "uniform")  # 3 cells of a 2 x 6 grid
    assert [divmod(i, 6) for i in r.keep.tolist()] == [(1, 1), (1, 3), (1, 5)]


@pytest.mark.parametrize("grid", [(1, 7), (7, 1), (3, 5), (6, 6), (14, 14)])
def test_uniform_gives_every_count_on_every_grid(grid):
    n = grid[0] * grid[1]
    x = torch.zeros(1, n, 1)
    for count in range(1, n + 1):
        r = prune(x, grid, 1 - count / n, "uniform")
        assert r.k == count  # prune() would raise if the pattern had duplicates or strays
        if count >= 4 and min(grid) >= 2:  # spread out: every quadrant of the grid gets a cell
            quadrants = {(2 * (i // grid[1]) >= grid[0], 2 * (i % grid[1]) >= grid[1]) for i in r.keep.tolist()}
            assert len(quadrants) == 4


# --- random -------------------------------------------------------------------------------


def test_random_is_reproducible_per_seed_and_differs_across_seeds():
    x = torch.randn(8, 16, 2)
    a = prune(x, (4, 4), 0.75, "random", seed=3).keep
    assert torch.equal(a, prune(x, (4, 4), 0.75, "random", seed=3).keep)
    assert not torch.equal(a, prune(x, (4, 4), 0.75, "random", seed=4).keep)
    assert torch.equal(prune(x, (4, 4), 0.75, "random").keep, prune(x, (4, 4), 0.75, "random", seed=0).keep)


def test_random_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    prune(torch.zeros(2, 4, 1), (2, 2), 0.5, "random", seed=9)
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5, True, "1"])
def test_random_rejects_bad_seeds(seed):
    message = f"seed must be an int in [0, 2**63), got {seed!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        prune(torch.zeros(2, 4, 1), (2, 2), 0.5, "random", seed=seed)


# --- divprune -----------------------------------------------------------------------------


def assert_greedy_max_min(x, grid, ratio, tolerance=1e-5):
    """DivPrune's pick order must be the authors' greedy max-min sequence, up to float rounding.

    Ties are inherent (two mutual nearest neighbours have the same nearest distance), and which
    of two tied tokens wins depends on how a matmul rounded; so each pick is checked against a
    float64 replay of the algorithm: its score is the maximum within `tolerance`.
    """
    t, n, d = x.shape
    k = keep_count(ratio, t * n)
    order = divprune.select_divprune(x, grid, k).keep.tolist()
    assert len(set(order)) == k
    unit = F.normalize(x.reshape(t * n, d).double(), dim=1)
    distance = 1 - unit @ unit.T  # [M, M]
    nearest = (distance + torch.diag(torch.full((t * n,), float("inf"), dtype=torch.float64))).amin(dim=0)
    assert nearest[order[0]] >= nearest.max() - tolerance  # the most isolated token first
    score = distance[order[0]].clone()  # distance to the nearest selected token
    score[order[0]] = float("-inf")
    for pick in order[1:]:
        assert score[pick] >= score.max() - tolerance, (order, pick)
        score = torch.minimum(score, distance[pick])
        score[pick] = float("-inf")


@given(
    t=st.integers(1, 5),
    grid=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    d=st.integers(3, 8),
    seed=st.integers(0, 2**16),
    ratio=RATIOS,
)
def test_divprune_is_the_greedy_max_min_sequence(t, grid, d, seed, ratio):
    x = torch.randn(t, grid[0] * grid[1], d, generator=torch.Generator().manual_seed(seed))
    assert_greedy_max_min(x, grid, ratio)


def test_divprune_is_the_greedy_max_min_sequence_on_a_larger_video():
    x = torch.randn(6, 20, 24, generator=torch.Generator().manual_seed(1))
    assert_greedy_max_min(x, (4, 5), 0.8)


@pytest.mark.parametrize("static", [False, True])
def test_divprune_blocked_search_is_the_greedy_sequence(monkeypatch, static):
    """Tiny blocks, so the bounded nearest-neighbour search and the column cache run many rounds."""
    monkeypatch.setattr(divprune, "_ROWS_ELEMENTS", 1)
    monkeypatch.setattr(divprune, "_MIN_ROWS", 3)
    monkeypatch.setattr(divprune, "_BLOCK", 2)
    for seed in range(8):
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(5, 12, 6, generator=generator)
        if static:  # near-repeats of frame 0: the neighbour bound prunes most tokens
            x = x[:1] + 0.05 * x
        assert_greedy_max_min(x, (3, 4), 0.7)


def test_divprune_never_keeps_two_duplicates_while_distinct_tokens_remain():
    directions = torch.eye(4)  # 4 distinct directions, each repeated 3 times at different scales
    x = torch.cat([directions * s for s in (1.0, 2.0, 3.0)]).reshape(3, 4, 4)
    r = prune(x, (2, 2), 1 - 4 / 12, "divprune")
    assert sorted(i % 4 for i in r.keep.tolist()) == [0, 1, 2, 3]


def test_divprune_starts_from_the_most_isolated_token():
    x = torch.tensor([[[1.0, 0.0], [1.0, 0.1], [0.9, 0.1], [-1.0, 0.2]]])  # token 3 is far from all
    r = prune(x, (2, 2), 0.75, "divprune")
    assert r.keep.tolist() == [3]


# --- dycoke -------------------------------------------------------------------------------


def moving_corner_video(t=8, seed=0):
    """A static 2 x 2 scene whose cell 0 changes in every frame."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, 8, generator=generator).repeat(t, 1, 1)  # [T, 4, 8]
    x[:, 0] = torch.randn(t, 8, generator=generator)
    return x


def test_dycoke_drops_static_positions_first():
    x = moving_corner_video()
    r = prune(x, (2, 2), 1 - 14 / 32, "dycoke")  # keep references (8) + the 6 moving tokens
    expected = [0, 1, 2, 3] + [4, 8, 12] + [16, 17, 18, 19] + [20, 24, 28]
    assert r.keep.tolist() == expected
    assert r.per_frame.tolist() == [4, 1, 1, 1, 4, 1, 1, 1]


def test_dycoke_drops_the_most_similar_to_the_window_reference():
    x = torch.zeros(4, 2, 2)
    x[:, :, 0] = 1.0
    x[1:, 0, 1] = torch.tensor([0.1, 2.0, 0.5])  # cell 0 drifts away from frame 0 by different amounts
    x[1:, 1, 1] = torch.tensor([0.2, 0.3, 0.0])  # cell 1 drifts less (frame 3 identical to frame 0)
    # cosine to frame 0: cell 0 in frames 1-3 = 0.995, 0.447, 0.894; cell 1 = 0.981, 0.958, 1.0
    r = prune(x, (1, 2), 1 - 4 / 8, "dycoke")
    assert r.keep.tolist() == [0, 1, 4, 6]


def test_dycoke_below_the_reference_count_keeps_novel_reference_tokens():
    x = moving_corner_video(t=8)
    # 5 tokens: all of frame 0, then frame 4's moving cell (its static cells repeat frame 0)
    assert prune(x, (2, 2), 1 - 5 / 32, "dycoke").keep.tolist() == [0, 1, 2, 3, 16]
    x = torch.tensor([[[1.0, 0.0], [0.0, 3.0], [2.0, 2.0], [0.5, 0.0]]]).repeat(2, 1, 1)
    # fewer tokens than one frame: frame 0 keeps its largest-norm tokens
    assert prune(x, (2, 2), 1 - 2 / 8, "dycoke").keep.tolist() == [1, 2]
