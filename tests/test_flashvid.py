"""flashvid (pre-LLM and in-LLM) against literal references derived from the FlashVID paper and its authors' code."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fpcli.model import load_model
from fpcli.model.inllm.prefill import prefill_pruned
from fpcli.model.inllm.span import VisualSpan
from fpcli.model.inllm.methods.fastv import FastV
from fpcli.model.inllm.methods.flashvid import STAGE
from fpcli.model.inllm.registry import InLLMPlan, in_llm_methods
from fpcli.model.inllm.hooks import decoder_layers, run_pruned_prefill
from fpcli.model.llava.sequence import visual_sequence
from fpcli.model.methods import is_in_llm, is_two_stage
from fpcli.prune import prune
from fpcli.prune.apportion import apportion
from fpcli.prune.flashvid import adts, segments, temporal_merge
from fpcli.prune.registry import keep_count


def _turning(cosines):
    """One-token frames of unit 2-D vectors whose consecutive cosines are `cosines`."""
    angles = np.concatenate([[0.0], np.cumsum(np.arccos(cosines))])
    return torch.tensor(np.stack([np.cos(angles), np.sin(angles)], axis=1), dtype=torch.float32)[:, None, :]


def test_dynamic_segmentation_cuts_below_the_threshold_then_the_least_similar():
    frames = _turning([0.95, 0.5, 0.99, 0.92])
    assert segments(frames, 0.9, 1).tolist() == [0, 0, 1, 1, 1]  # only 0.5 < 0.9
    assert segments(frames, 0.9, 4).tolist() == [0, 1, 2, 2, 3]  # + the two least similar left: 0.92, 0.95
    assert segments(frames, 0.9, 8).tolist() == [0, 1, 2, 3, 4]  # every transition, never twice


def _adts_frame():
    # Unit vectors e0 = (1, 0), e1 = (0.8, 0.6), e2 = (0, 1), e3 = (-0.6, 0.8): distances 1 - cos
    # d01 0.2, d02 1, d03 1.6, d12 0.4, d13 1, d23 0.2.
    x = torch.tensor([[[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]]])
    return x, torch.tensor([[0.1, 0.4, 0.2, 0.3]])


def test_adts_picks_by_attention_scaled_max_min_distance():
    # Columns scaled by attention: col 0 [0, .02, .1, .16], col 1 [.08, 0, .16, .4], col 2 [.2, .08, 0, .04],
    # col 3 [.48, .3, .06, 0]; second smallest per column .02 .08 .04 .06: token 1 first. Its row, scaled:
    # [.02, 0, .08, .3]: token 3 next. min(row 1, row 3 = [.16, .4, .04, 0]) = [.02, 0, .04, 0]: token 2 third.
    x, attention = _adts_frame()
    segment = torch.zeros(1, dtype=torch.long)
    for count, expected in ((1, [1]), (2, [1, 3]), (3, [1, 2, 3])):
        picked = adts(x, attention, torch.tensor([count]), segment, relevance=False)
        assert picked[0].nonzero()[:, 0].tolist() == expected


def test_adts_v2_weighs_by_relevance_to_the_segment_mean():
    # Every token's nearest neighbour is at distance 0.2, so the first pick is the largest weight. Segment mean
    # (0.3, 0.6); relevance x_j . mean = .3 .6 .6 .3. With attention [.4, .3, .1, .1], v1 picks token 0 (.4), then
    # from its scaled row [0, .06, .1, .16] token 3; v2's weights .12 .18 .06 .03 pick token 1, then from its row
    # [.2 * .12, 0, .4 * .06, 1 * .03] = [.024, 0, .024, .03] token 3.
    x, _ = _adts_frame()
    attention = torch.tensor([[0.4, 0.3, 0.1, 0.1]])
    segment = torch.zeros(1, dtype=torch.long)
    assert adts(x, attention, torch.tensor([2]), segment, False)[0].nonzero()[:, 0].tolist() == [0, 3]
    assert adts(x, attention, torch.tensor([2]), segment, True)[0].nonzero()[:, 0].tolist() == [1, 3]


def test_apportion_gives_each_set_its_total_by_largest_remainders():
    # Set 0: 3 over sizes 2, 2, 1 is 1.2, 1.2, 0.6: floors 1, 1, 0 and the largest remainder (0.6) gets the third.
    # Set 1: 2 over sizes 3, 1 is 1.5, 0.5: floors 1, 0, equal remainders, the lower part gets it.
    shares = apportion(torch.tensor([3, 2]), torch.tensor([2, 2, 1, 3, 1]), torch.tensor([0, 0, 0, 1, 1]))
    assert shares.tolist() == [1, 1, 1, 2, 0]


def _chain():
    """Three frames of two cells: cell 0 drifts (1, 0) -> (1, 0.1), frame 2's cell 1 (1, 0.2) follows it; cell 1 of
    frames 0-1 is (0, 1) twice; frame 2's cell 0 (-1, 0) is new."""
    return torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.1], [0.0, 1.0]], [[-1.0, 0.0], [1.0, 0.2]]])


def test_temporal_merge_averages_whole_chains_and_respects_the_budget():
    x = _chain()
    free = torch.ones(3, 2, dtype=torch.bool)
    segment = torch.zeros(3, dtype=torch.long)
    # Pairs above 0.8: (1,0)->(0,0) cos .995, (1,1)->(0,1) cos 1, (2,1)->(1,0) cos .9988; (2,0) best is 0.
    root, means = temporal_merge(x, free, segment, 0.8, torch.tensor([3]))
    assert root.tolist() == [0, 1, 0, 1, 4, 0]  # (2,1) reaches (0,0) through (1,0)
    roots = (root == torch.arange(6)).view(3, 2)
    # The chain (0,0) <- (1,0) <- (2,1) is the mean of its three tokens, (1, 0.1); the authors' counts give 1.5x.
    torch.testing.assert_close(means[roots], torch.tensor([[1.0, 0.1], [0.0, 1.0], [-1.0, 0.0]]))
    # Budget 4 allows 6 - 4 = 2 merges: the two most similar pairs (cos 1 and .9988); (1,0) stays a root.
    root, means = temporal_merge(x, free, segment, 0.8, torch.tensor([4]))
    assert root.tolist() == [0, 1, 2, 1, 4, 2]
    roots = (root == torch.arange(6)).view(3, 2)
    torch.testing.assert_close(means[roots], torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.15], [-1.0, 0.0]]))


def test_crafted_video_end_to_end():
    # K = 3 (ratio 0.5 of 6), one segment (threshold -1, min 1), alpha 0: no ADTS token, a TSTM budget of 3.
    # Temporal merging leaves exactly the three roots of the chain test, so each is its own cluster.
    x = _chain()
    r = prune(x, (1, 2), 0.5, "flashvid", alpha=0.0, segment_threshold=-1.0, min_segments=1,
              extras={"vision_attention": torch.ones(3, 2)})
    assert r.keep.tolist() == [0, 1, 4]
    torch.testing.assert_close(r.features, torch.tensor([[1.0, 0.1], [0.0, 1.0], [-1.0, 0.0]]))
    assert r.merged_into.tolist() == [-1, -1, 0, 1, -1, 0]  # each chain into its root
    # alpha 1: all three by ADTS, one per frame (budgets 1, 1, 1), features untouched.
    r = prune(x, (1, 2), 0.5, "flashvid", alpha=1.0, extras={"vision_attention": torch.ones(3, 2)})
    assert r.per_frame.tolist() == [1, 1, 1] and r.features is not None
    torch.testing.assert_close(r.features, x.reshape(6, 2)[r.keep])


@given(
    frames=st.integers(1, 6),
    h=st.integers(1, 4),
    w=st.integers(1, 4),
    ratio=st.floats(0.0, 0.99),
    alpha=st.sampled_from([0.0, 0.3, 0.7, 1.0]),
    relevance=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_exact_budget_for_any_ratio_frames_and_grid(frames, h, w, ratio, alpha, relevance, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(frames, h * w, 8, generator=generator)
    x[1:] += 2 * x[:1]  # frames alike enough for temporal merging
    attention = torch.rand(frames, h * w, generator=generator)
    r = prune(x, (h, w), ratio, "flashvid", alpha=alpha, relevance=relevance, extras={"vision_attention": attention})
    assert len(r.keep) == keep_count(ratio, frames * h * w) == r.k
    assert r.features.shape == (r.k, 8) and bool(torch.isfinite(r.features).all())


class _Step(SimpleNamespace):
    def attention_row(self):
        return self.row


def test_reducer_keeps_the_top_attended_visual_tokens_from_its_layer():
    visual = torch.tensor([-1, 0, 1, 2, 3, -1])
    row = torch.tensor([0.5, 0.3, 0.1, 0.2, 0.05, 0.0])
    reducer = FastV(2, K=2)  # FlashVID's in-LLM stage
    outcomes = []
    for index in range(3):
        step = _Step(index=index, hidden=torch.zeros(1, 6, 4), visual=visual, row=row)
        outcomes.append(reducer.reduce(step))
        reducer.observe(step)
    assert outcomes[:2] == [None, None]
    assert outcomes[2][0].tolist() == [0, 1, 3, 5] and outcomes[2][1] is None


def test_in_llm_stage_is_registered_with_the_authors_defaults_as_a_second_stage():
    assert [spec.default for spec in STAGE.options] == [20, 0.3] and STAGE.layer_options == ("layer",)
    assert STAGE.build(0.9, InLLMPlan(28, 8, (4, 4)), layer=20, llm_keep=0.3).keep == keep_count(0.9, 128) == 13
    assert in_llm_methods()["flashvid"] is STAGE and is_two_stage("flashvid") and not is_in_llm("flashvid")
    assert STAGE.pre_budget(0.75, 36, layer=20, llm_keep=0.3) == 30  # round-half-up(9 / 0.3)


def _embeds(llm, ids, start, visual):
    """The prompt's embeddings [1, L, D] with the visual sequence in place of its placeholder token."""
    text = llm.model.get_input_embeddings()(ids)  # [L_text, D]
    return torch.cat([text[:start], visual.to(text.dtype), text[start + 1:]])[None]


@pytest.fixture(scope="module")
def ov(tiny_onevision_dir):
    return load_model(tiny_onevision_dir, device="cpu")


def test_in_llm_stage_matches_fastv_at_the_same_layer_and_count(ov):
    encoded = ov.encode(np.random.default_rng(1).integers(0, 256, (4, 24, 40, 3), dtype=np.uint8))
    t, n, _ = encoded.features.shape
    ids, start = ov.prompt_ids(["What happens?"], [], t / 2, [f / 2 for f in range(t)])
    visual, _ = visual_sequence(encoded.features, torch.arange(t * n), encoded.grid, ov.vision.image_newline,
                                "onevision")
    with torch.inference_mode():
        embeds = _embeds(ov, ids, start, visual)
        before = ov.model(inputs_embeds=embeds).logits
    span = VisualSpan(start, t, encoded.grid, "onevision")
    k = keep_count(0.75, t * n)
    reducer = STAGE.build(0.75, InLLMPlan(2, t, encoded.grid), layer=1, llm_keep=0.3)
    ours = run_pruned_prefill(ov.model, embeds, span, reducer, "flashvid", {"layer": 1})
    fastv = prefill_pruned(ov.model, embeds, span, 0.75, "fastv", {"K": 1})
    assert torch.equal(ours.kept_positions, fastv.kept_positions) and ours.visual_lengths == [t * n, k]
    torch.testing.assert_close(ours.last_logits, fastv.last_logits)
    with torch.inference_mode():
        assert torch.equal(ov.model(inputs_embeds=embeds).logits, before)
    assert all(not layer._forward_pre_hooks for layer in decoder_layers(ov.model))
