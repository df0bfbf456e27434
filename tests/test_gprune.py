"""G-Prune scores (exact values on hand-computable frames) and the per-frame `gprune` method."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fpcli.prune import prune
from fpcli.prune.gprune import gprune_scores, rank_key, ranked_tokens


def test_scores_hand_computed():
    # Tokens 0 and 1 point the same way (cos 1), token 2 is orthogonal (cos 0 -> dropped edge).
    # Row softmax of [[33.3, 33.3, -5000], ...] is exactly [[.5, .5, 0], [.5, .5, 0], [0, 0, 1]],
    # idempotent, so A^5 = A; degrees [2, 2, 1]; norms [1, 2, 1]:
    # score_0 = score_1 = (1 * .5 + 2 * .5) / 2 = 0.75, score_2 = 1 * 1 / 1 = 1.
    frame = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]])
    assert gprune_scores(frame).tolist() == [[0.75, 0.75, 1.0]]


def test_scores_zero_and_nan_frames():
    # All-zero tokens: every edge dropped, uniform walk, zero norms -> scores 0.
    # NaN features make NaN scores, reported as 0; other frames are unaffected.
    x = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]], [[0.0, 0.0]] * 3, [[math.nan, 1.0]] * 3])
    assert gprune_scores(x).tolist() == [[0.75, 0.75, 1.0], [0.0] * 3, [0.0] * 3]


def test_scores_only_nan_becomes_zero():
    # A norm that overflows float32 gives infinite scores, kept as in the released code (not
    # clamped to the largest float). (That token normalises to zero, so its walk row is uniform.)
    frame = torch.tensor([[[3e38, 3e38, 0.0], [0.0, 0.0, 1.0]]])
    assert gprune_scores(frame).tolist() == [[math.inf, math.inf]]


def test_scores_hand_computed_walk_and_temperature():
    # Tokens 0 and 1 at 45 degrees (cos c = 1/sqrt(2) >= 0.5: an edge), token 2 orthogonal to both (dropped).
    # Rows 0 and 1 of the softmax at temperature 0.03 are [1 - q, q, 0] and [q, 1 - q, 0] with
    # q = r / (1 + r), r = exp((c - 1) / 0.03) = 5.7532e-5; row 2 is [0, 0, 1]. The 2x2 block's 5th power is
    # 1/2 [[1 + s, 1 - s], [1 - s, 1 + s]] with s = (1 - 2q)^5 = 0.99942481. Norms [1, 2, 3], degrees [2, 2, 1]:
    # score_0 = (1 (1 + s) / 2 + 2 (1 - s) / 2) / 2 = 0.50014380, score_1 = (1 (1 - s) / 2 + 2 (1 + s) / 2) / 2
    # = 0.99985620, score_2 = 3. (Temperature 0.05 would give 0.50704; one walk step instead of 5, 0.50002877.)
    root2 = math.sqrt(2)
    frame = torch.tensor([[[1.0, 0.0, 0.0], [root2, root2, 0.0], [0.0, 0.0, 3.0]]])
    scores = gprune_scores(frame)
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores, torch.tensor([[0.50014380, 0.99985620, 3.0]]), rtol=1e-6, atol=0)


def test_scores_do_not_depend_on_the_other_frames():
    # More frames than one chunk: each frame's scores are those it gets alone.
    torch.manual_seed(0)
    x = torch.randn(40, 9, 16) + torch.randn(1, 1, 16) * 2  # correlated tokens: edges survive
    scores = gprune_scores(x)
    assert scores.shape == (40, 9)
    torch.testing.assert_close(scores, torch.cat([gprune_scores(frame[None]) for frame in x]), rtol=1e-6, atol=0)


def test_scores_dtype_independent_on_representable_values():
    torch.manual_seed(1)
    x = torch.randint(-4, 5, (3, 12, 8)).float() / 4  # exact in float16 and bfloat16
    ref = gprune_scores(x)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        assert torch.equal(gprune_scores(x.to(dtype)), ref)


def test_rank_key_orders_descending_then_lower_index():
    values = torch.tensor([0.5, -0.0, 0.5, -1.0, 0.0, float("inf"), -2.5])
    index = torch.arange(7)
    order = rank_key(values, index).argsort(descending=True).tolist()
    assert order == [5, 0, 2, 1, 4, 3, 6]  # -0.0 ties with 0.0 and loses to the lower index


def test_ranked_tokens_ties_to_lower_index():
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0]])
    assert ranked_tokens(scores).tolist() == [[1, 2, 4, 3, 0]]


def test_method_keeps_best_tokens_per_frame_with_remainder_to_best_next():
    # Frame scores chosen through the norms: per frame the norm order is the score order.
    x = torch.zeros(3, 4, 4)
    for t in range(3):
        for j in range(4):
            x[t, j, j] = 1.0 + j + 10 * t * (j == 0)  # orthogonal tokens: score = norm
    # K = 7: 2 per frame, and the one extra goes to the frame whose 3rd best scores highest.
    scores = gprune_scores(x)
    assert scores[2].tolist() == [21.0, 2.0, 3.0, 4.0]
    r = prune(x, grid=(2, 2), ratio=1 - 7 / 12, method="gprune")
    # Third-best scores: frame 0 -> 2.0, frame 1 -> 3.0, frame 2 -> 3.0: the tie goes to frame 1.
    assert r.per_frame.tolist() == [2, 3, 2]
    assert r.keep.tolist() == [2, 3, 4, 6, 7, 8, 11]


def test_method_fewer_tokens_than_frames_keeps_best_frames():
    x = torch.zeros(5, 1, 5)
    for t, norm in enumerate([1.0, 5.0, 2.0, 5.0, 5.0]):
        x[t, 0, t] = norm
    r = prune(x, grid=(1, 1), ratio=0.6, method="gprune")  # K = 2 < T = 5
    assert r.keep.tolist() == [1, 3]  # the best frames; of the three tied at 5, the earliest two


@given(
    t=st.integers(1, 6),
    h=st.integers(1, 4),
    w=st.integers(1, 4),
    ratio=st.one_of(st.just(0.0), st.floats(0.0, 0.99)),
    seed=st.integers(0, 2**16),
)
def test_method_exact_k_spread_evenly(t, h, w, ratio, seed):
    x = torch.randn(t, h * w, 6, generator=torch.Generator().manual_seed(seed))
    r = prune(x, grid=(h, w), ratio=ratio, method="gprune")
    assert r.keep.numel() == r.k
    assert int(r.per_frame.max() - r.per_frame.min()) <= 1
    assert torch.equal(prune(x, grid=(h, w), ratio=ratio, method="gprune").keep, r.keep)


def test_method_rejects_options():
    with pytest.raises(ValueError, match="unknown option"):
        prune(torch.randn(2, 4, 3), grid=(2, 2), ratio=0.5, method="gprune", tau_s=0.5)
