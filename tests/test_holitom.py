"""holitom (pre-LLM and in-LLM) against literal references derived from the HoliTom paper and its authors' code."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fpcli.model import load_model
from fpcli.model.inllm.hooks import decoder_layers, run_pruned_prefill
from fpcli.model.inllm.methods.holitom import STAGE, HoliTomMerge, halving_merge
from fpcli.model.inllm.registry import InLLMPlan, in_llm_methods
from fpcli.model.inllm.span import VisualSpan
from fpcli.model.llava.sequence import visual_sequence
from fpcli.model.methods import is_in_llm, is_two_stage
from fpcli.prune import prune
from fpcli.prune.density_peaks import density_peaks, merge_clusters
from fpcli.prune.holitom import static_until, static_windows
from fpcli.prune.registry import keep_count
from fpcli.prune.two_stage import split_budget


def test_density_peaks_on_a_line_matches_the_dpc_knn_equations():
    # Six 1-D tokens (D = 1, so d = |a - b|), 3 clusters, k = 3 nearest (the token itself included):
    #   rho = exp(-(d1^2 + d2^2) / 3): 1 -> 0.417, 1.5 -> 0.833, 0 -> 1.083, 9 -> 5.347, 9.2 -> 5.893, 5 -> 9.417
    #   (densest first: 1, 1.5, 0, 9, 9.2, 5);
    #   delta (nearest denser; the densest gets the largest distance 9.2): 1 -> 9.2, 1.5 -> 0.5, 0 -> 1,
    #   9 -> 7.5, 9.2 -> 0.2, 5 -> 3.5;
    #   rho * delta: 1 -> 6.07, 0 -> 0.339, 1.5 -> 0.217, 9 -> 0.036, 9.2 -> 0.0006, 5 -> 0.0003.
    # Centres 1, 0 and 1.5; 5, 9 and 9.2 are nearest to 1.5.
    x = torch.tensor([0.0, 1.0, 1.5, 5.0, 9.0, 9.2])[None, :, None]
    is_center, owner = density_peaks(x, torch.ones(1, 6, dtype=torch.bool), torch.tensor([3]), torch.tensor([3]))
    assert is_center[0].tolist() == [True, True, True, False, False, False]
    assert owner[0].tolist() == [0, 1, 2, 2, 2, 2]
    means = merge_clusters(x, owner)[0, :3, 0]
    torch.testing.assert_close(means, torch.tensor([0.0, 1.0, (1.5 + 5 + 9 + 9.2) / 4]))
    weighted = merge_clusters(x, owner, 0.6)[0, :3, 0]  # HoliTom: 0.6 * centre + 0.4 * mean of the others
    torch.testing.assert_close(weighted, torch.tensor([0.0, 1.0, 0.6 * 1.5 + 0.4 * (5 + 9 + 9.2) / 3]))


def test_static_windows_follow_the_authors_dynamic_programme():
    # saved[s][e]: tokens a window [s, e] saves. Frame 1: [0, 1] saves 3. Frame 2: [0, 2] saves 4 > 3 (and
    # [1, 2] only 0 + 2). Frame 3: best[1] + [2, 3] = 3 + 3 = 6 beats [0, 2] + frame 3 alone (4).
    saved = [[0, 3, 4, 0], [0, 0, 2, 0], [0, 0, 0, 3], [0, 0, 0, 0]]
    assert static_windows(saved, 1024) == [(0, 1), (2, 3)]
    assert static_windows(saved, 1) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert static_windows([[0, 0], [0, 0]], 1024) == [(0, 0), (1, 1)]  # nothing saved: ties keep single frames


def test_static_until_is_the_end_of_each_run_of_similar_frames():
    # Cell 0 stays put over frames 0-2 then turns; cell 1 turns at once.
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.1], [1.0, 0.0]], [[1.0, 0.2], [0.0, 1.0]],
                      [[-1.0, 0.0], [0.0, 1.0]]])
    assert static_until(x, 0.8).tolist() == [[2, 0], [2, 1], [2, 3], [3, 3]]


def _crafted():
    """Two frames of a 1x3 grid: cell 0 static (cos 0.995 > 0.8), cells 1 and 2 change (cos 0)."""
    features = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [[1.0, 0.1], [1.0, 0.0], [-1.0, 1.0]]])
    attention = torch.tensor([[0.5, 0.1, 0.4], [0.9, 0.3, 0.2]])
    return features, attention


def test_crafted_video_keeps_the_static_mean_and_the_most_attended_dynamic_tokens():
    # Window [0, 1] saves 1 token: cell 0 becomes one token, mean (1, 0.05), at frame 0. Candidates: frame 0's
    # cells 1, 2; frame 1's cells 1, 2; the static token: sizes 2, 2, 1 (5). K = 3 shared 1.2 / 1.2 / 0.6: floors
    # 1, 1, 0 and the largest remainder (0.6) gives the static group its token. Each frame keeps its most attended
    # dynamic cell (contextual_share 0): frame 0 cell 2 (0.4 > 0.1; cell 0's 0.5 is static), frame 1 cell 1.
    features, attention = _crafted()
    r = prune(features, (1, 3), 0.5, "holitom", extras={"vision_attention": attention})
    assert r.keep.tolist() == [0, 2, 4]
    torch.testing.assert_close(r.features, torch.tensor([[1.0, 0.05], [1.0, 1.0], [1.0, 0.0]]))
    assert r.merged_into.tolist() == [-1, -1, -1, 0, -1, -1]  # frame 1's static cell is in token 0; 1, 5 dropped


def test_low_ratio_brings_absorbed_tokens_back():
    # K = 6 > the 5 candidates: frame 1's cell 0 (absorbed into the static mean) comes back as itself.
    features, attention = _crafted()
    r = prune(features, (1, 3), 0.0, "holitom", extras={"vision_attention": attention})
    assert r.keep.tolist() == list(range(6))
    torch.testing.assert_close(r.features[[0, 3]], torch.tensor([[1.0, 0.05], [1.0, 0.1]]))


def test_contextual_share_merges_the_rest_of_a_frame_around_a_centre():
    # One frame (no temporal merging), 5 tokens, K = 2, contextual_share 0.5: round(2 * 0.5) = 1 dominant (token
    # 4, attention 0.9); the other 4 form 1 cluster (k = 1: every density exp(0), ties to the lower index, so token
    # 0 is densest and, with the largest distance as its delta, the centre): 0.6 * x0 + 0.4 * mean(x1, x2, x3).
    x = torch.tensor([[[0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [9.0, 1.0]]])
    attention = torch.tensor([[0.1, 0.2, 0.3, 0.0, 0.9]])
    r = prune(x, (1, 5), 0.6, "holitom", contextual_share=0.5, extras={"vision_attention": attention})
    assert r.keep.tolist() == [0, 4]
    torch.testing.assert_close(r.features, torch.tensor([[0.6 * 0 + 0.4 * 2.0, 1.0], [9.0, 1.0]]))
    assert r.merged_into.tolist() == [-1, 0, 0, 0, -1]


@given(
    frames=st.integers(1, 6),
    h=st.integers(1, 4),
    w=st.integers(1, 4),
    ratio=st.floats(0.0, 0.99),
    repeats=st.lists(st.booleans(), min_size=5, max_size=5),
    seed=st.integers(0, 2**16),
)
def test_exact_budget_for_any_ratio_frames_and_grid(frames, h, w, ratio, repeats, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(frames, h * w, 8, generator=generator)
    for t in range(1, frames):  # some frames repeat the previous one almost exactly: static windows
        if repeats[t - 1]:
            x[t] = x[t - 1] + 0.01 * torch.randn(h * w, 8, generator=generator)
    attention = torch.rand(frames, h * w, generator=generator)
    r = prune(x, (h, w), ratio, "holitom", extras={"vision_attention": attention}, contextual_share=0.3)
    assert len(r.keep) == keep_count(ratio, frames * h * w) == r.k
    assert r.features.shape == (r.k, 8) and bool(torch.isfinite(r.features).all())


@pytest.mark.parametrize(("ratio", "total", "keep", "expected"), [
    (0.9, 100, 0.5, (20, 10)),  # HoliTom: 10 tokens from layer 18 on, twice that before
    (0.9, 100, 0.3, (33, 10)),  # FlashVID: 10 / 0.3 = 33.3
    (0.95, 100, 0.3, (17, 5)),  # 16.67 rounds up
    (0.2, 100, 0.5, (100, 80)),  # 160 capped at every token
    (0.999, 100, 0.3, (3, 1)),  # at least one token, 1 / 0.3 = 3.33
])
def test_split_budget_ends_at_k_from_the_in_llm_layer(ratio, total, keep, expected):
    budgets = split_budget(ratio, total, keep)
    assert (budgets.pre, budgets.final) == expected
    assert budgets.final == keep_count(ratio, total)


def test_halving_merge_is_the_authors_sequence_of_pairwise_averages():
    # Rows: text, then visual 1..4; kept 1 and 3. Rows 2 and 4 are most similar to row 1 (cosine), so the authors'
    # loop sets h1 = (h1 + h2) / 2, then h1 = (h1 + h4) / 2: h1 / 4 + h2 / 4 + h4 / 2 = (2.75, 0.05).
    hidden = torch.tensor([[5.0, 5.0], [1.0, 0.0], [2.0, 0.2], [0.0, 1.0], [4.0, 0.0]])
    out = halving_merge(hidden, torch.tensor([1, 3]), torch.tensor([2, 4]))
    torch.testing.assert_close(out[[0, 1, 3]], torch.tensor([[5.0, 5.0], [2.75, 0.05], [0.0, 1.0]]))


class _Step(SimpleNamespace):
    def attention_row(self):
        return self.row


def test_reducer_keeps_the_most_attended_visual_tokens_and_merges_the_others():
    hidden = torch.tensor([[[5.0, 5.0], [1.0, 0.0], [2.0, 0.2], [0.0, 1.0], [4.0, 0.0], [7.0, 7.0]]])
    visual = torch.tensor([-1, 0, 1, 2, 3, -1])
    row = torch.tensor([0.5, 0.3, 0.1, 0.2, 0.05, 0.0])  # visual tokens 0 (0.3) and 2 (0.2) attended most
    reducer = HoliTomMerge(2, layer=1)
    for index in (0, 1):
        step = _Step(index=index, hidden=hidden, visual=visual, row=row)
        reduced = reducer.reduce(step)
        reducer.observe(step)
        assert (reduced is None) == (index == 0)
    keep, new_hidden = reduced
    assert keep.tolist() == [0, 1, 3, 5]
    torch.testing.assert_close(new_hidden[0, keep], torch.tensor([[5.0, 5.0], [2.75, 0.05], [0.0, 1.0], [7.0, 7.0]]))


def test_in_llm_stage_is_registered_with_the_authors_defaults_as_a_second_stage():
    assert [spec.default for spec in STAGE.options] == [18, 0.5] and STAGE.layer_options == ("layer",)
    assert STAGE.build(0.75, InLLMPlan(28, 4, (3, 3)), layer=18, llm_keep=0.5).keep == keep_count(0.75, 36) == 9
    assert in_llm_methods()["holitom"] is STAGE and is_two_stage("holitom") and not is_in_llm("holitom")
    assert STAGE.pre_budget(0.75, 36, layer=18, llm_keep=0.5) == 18  # K / llm_keep enter the LLM


def _embeds(llm, ids, start, visual):
    """The prompt's embeddings [1, L, D] with the visual sequence in place of its placeholder token."""
    text = llm.model.get_input_embeddings()(ids)  # [L_text, D]
    return torch.cat([text[:start], visual.to(text.dtype), text[start + 1:]])[None]


@pytest.fixture(scope="module")
def ov(tiny_onevision_dir):
    return load_model(tiny_onevision_dir, device="cpu")


class _PrunedSpan:
    """The visual block of a pre-pruned prompt: the kept tokens' flat indices at consecutive positions."""

    def __init__(self, start: int, keep: torch.Tensor):
        self.start, self.keep, self.tokens = start, keep, len(keep)

    def visual_index(self, seq_len, device="cpu"):
        index = torch.full((seq_len,), -1, dtype=torch.long, device=device)
        index[self.start:self.start + self.tokens] = self.keep
        return index


def test_two_stages_end_at_k_and_leave_the_model_unchanged(ov):
    encoded = ov.encode(np.random.default_rng(0).integers(0, 256, (4, 24, 40, 3), dtype=np.uint8))
    t, n, _ = encoded.features.shape
    budgets = split_budget(0.75, t * n, 0.5)
    pruned = prune(encoded.features, encoded.grid, 1 - budgets.pre / (t * n), "holitom", extras=encoded.extras)
    assert pruned.k == budgets.pre
    ids, start = ov.prompt_ids(["What happens?"], [], t / 2, [f / 2 for f in range(t)])
    visual, _ = visual_sequence(encoded.features, pruned.keep, encoded.grid, ov.vision.image_newline, "onevision",
                                pruned.features)
    with torch.inference_mode():
        embeds = _embeds(ov, ids, start, visual)
        before = ov.model(inputs_embeds=embeds).logits
    reducer = STAGE.build(0.75, InLLMPlan(2, t, encoded.grid), layer=1, llm_keep=0.5)
    out = run_pruned_prefill(ov.model, embeds, _PrunedSpan(start, pruned.keep), reducer, "holitom", {"layer": 1})
    assert out.visual_lengths == [budgets.pre, budgets.final]
    assert [layer.keys.shape[2] for layer in out.cache.layers] == [len(out.kept_positions)] * 2
    with torch.inference_mode():
        after = ov.model(inputs_embeds=embeds).logits
    assert torch.equal(before, after)
    assert all(not layer._forward_pre_hooks for layer in decoder_layers(ov.model))


def test_video_layout_keeps_every_newline_and_text_token(tiny_video_dir):
    llm = load_model(tiny_video_dir, device="cpu")
    encoded = llm.encode(np.random.default_rng(2).integers(0, 256, (3, 24, 40, 3), dtype=np.uint8))
    t, n, _ = encoded.features.shape
    ids, start = llm.prompt_ids(["What happens?"], [], t / 2, [f / 2 for f in range(t)])
    visual, _ = visual_sequence(encoded.features, torch.arange(t * n), encoded.grid, llm.vision.image_newline, "video")
    with torch.inference_mode():
        embeds = _embeds(llm, ids, start, visual)
    span = VisualSpan(start, t, encoded.grid, "video")
    reducer = STAGE.build(0.75, InLLMPlan(2, t, encoded.grid), layer=1, llm_keep=0.5)
    out = run_pruned_prefill(llm.model, embeds, span, reducer, "holitom", {"layer": 1})
    structure = (span.visual_index(embeds.shape[1]) < 0).nonzero()[:, 0]  # text and the t*H newlines
    assert torch.isin(structure, out.kept_positions).all()
    assert out.visual_lengths == [t * n, keep_count(0.75, t * n)]
    assert len(out.kept_positions) == len(structure) + keep_count(0.75, t * n)


def test_only_tokens_absorbed_over_a_whole_window_come_back():
    # Three frames of a 1x3 grid. Cells 0 and 2 drift slowly (cos > 0.99); cell 1 stays alike in frames 0-1
    # (cos 0.919), then turns (cos -0.39). Windows: [0, 1] would save 3, [0, 2] saves 2 cells x 2 frames = 4: one window [0, 2], where
    # cell 1 is dynamic in every frame. Candidates: 2 static means + 3 cell-1 tokens = 5.
    x = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], [[1.0, 0.1], [1.0, 0.4], [0.1, 1.0]],
                      [[1.0, 0.2], [-1.0, 1.0], [0.2, 1.0]]])
    attention = {"vision_attention": torch.ones(3, 3)}
    r = prune(x, (1, 3), 0.0, "holitom", extras=attention)  # K = 9: the 4 absorbed tokens come back as they are
    assert r.keep.tolist() == list(range(9))
    torch.testing.assert_close(r.features[[0, 2, 3, 5, 6, 8]], torch.tensor(
        [[1.0, 0.1], [0.1, 1.0], [1.0, 0.1], [0.1, 1.0], [1.0, 0.2], [0.2, 1.0]]))
    # K = 6: one comes back, the least similar to its previous frame: frame 1's cells 0 and 2 (cos 0.99504, equal
    # by symmetry; frame 2's are 0.99522), the lower index first. Frame 1's cell 1 (less similar still, but not
    # static over the whole window) is a candidate already, never an absorbed token.
    r = prune(x, (1, 3), 1 / 3, "holitom", extras=attention)
    assert r.keep.tolist() == [0, 1, 2, 3, 4, 7]
    assert r.merged_into.tolist() == [-1, -1, -1, -1, -1, 2, 0, -1, 2]  # the rest stay in their static tokens
