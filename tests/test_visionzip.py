"""visionzip against a literal reference of the published algorithm, and the merging-method contract of prune()."""

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fpcli.prune import OptionSpec, Selection, options_of, prune, register_method, validate
from fpcli.prune.registry import keep_count
from fpcli.prune.builtin import DOMINANT_SHARE
from fpcli.prune.visionzip import frame_budgets


def reference_visionzip(features, attention, keys, k, share, joined=None):
    """VisionZip as its SigLIP ports describe it, one frame and one token at a time: {flat index: feature}.
    `joined`, a dict, receives {flat index of a merged token: flat index of the target it joined}."""
    t, n, _ = features.shape
    kept = {}
    start = 0
    for frame in range(t):
        budget = (frame + 1) * k // t - start
        start += budget
        dominant = math.floor(Fraction(repr(share)) * budget + Fraction(1, 2))  # round half up
        ranked = sorted(range(n), key=lambda i: (-float(attention[frame, i]), i))
        top = ranked[:dominant]
        for i in top:
            kept[frame * n + i] = features[frame, i]
        contextual = budget - dominant
        if contextual == 0:
            continue
        rest = [i for i in range(n) if i not in top]
        step = max(1, len(rest) // contextual)
        targets = rest[::step][:contextual]
        groups = {target: [target] for target in targets}
        unit = keys[frame] / keys[frame].norm(dim=-1, keepdim=True)
        for i in rest:
            if i in groups:
                continue
            similarities = [float(unit[i] @ unit[target]) for target in targets]
            groups[targets[similarities.index(max(similarities))]].append(i)
        for target, members in groups.items():
            kept[frame * n + target] = features[frame, members].mean(dim=0)
            if joined is not None:
                joined.update({frame * n + i: frame * n + target for i in members if i != target})
    return kept


def run(features, attention, keys, ratio, **options):
    extras = {"vision_attention": attention, "vision_keys": keys}
    return prune(features, (features.shape[1] // 4, 4), ratio, "visionzip", extras=extras, **options)


def test_crafted_frame_dominant_and_contextual_tokens_are_known():
    # One 4x4 frame. Attention peaks at 5, 10, 15: with K = 5 and share 0.6, those are the 3 dominant tokens.
    # The 13 others, in grid order, are 0 1 2 3 4 6 7 8 9 11 12 13 14: stride 13 // 2 = 6 makes the 1st and the 7th
    # (tokens 0 and 7) the targets. Keys send 1 2 3 4 6 to target 0 and 8 9 11 12 13 14 to target 7.
    features = torch.arange(16, dtype=torch.float32).repeat(2, 1).T.reshape(1, 16, 2) * torch.tensor([1.0, -2.0])
    attention = torch.full((1, 16), 0.01)
    attention[0, [5, 10, 15]] = torch.tensor([0.3, 0.2, 0.4])
    keys = torch.zeros(1, 16, 2)
    keys[0, :7] = torch.tensor([1.0, 0.1])
    keys[0, 7:] = torch.tensor([0.1, 1.0])
    keys[0, 0], keys[0, 7] = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    r = run(features, attention, keys, 0.6875, dominant_share=0.6)  # K = 16 * 0.3125 = 5
    assert r.keep.tolist() == [0, 5, 7, 10, 15]
    first = (0 + 1 + 2 + 3 + 4 + 6) / 6
    second = (7 + 8 + 9 + 11 + 12 + 13 + 14) / 7
    expected = torch.tensor([[first, -2 * first], [5, -10], [second, -2 * second], [10, -20], [15, -30]])
    torch.testing.assert_close(r.features, expected)


def test_ties_in_attention_and_similarity_go_to_the_lower_index():
    features = torch.randn(1, 8, 3, generator=torch.Generator().manual_seed(0))
    r = run(features, torch.zeros(1, 8), torch.ones(1, 8, 2), 0.5, dominant_share=0.5)  # K = 4: 2 + 2
    # Dominant: 0 and 1; rest 2..7, stride 3: targets 2 and 5; equal keys: every other token joins target 2.
    assert r.keep.tolist() == [0, 1, 2, 5]
    torch.testing.assert_close(r.features[2], features[0, [2, 3, 4, 6, 7]].mean(0))
    torch.testing.assert_close(r.features[3], features[0, 5])


@pytest.mark.parametrize(
    ("t", "n", "ratio", "budgets"), [(3, 16, 0.9, [1, 2, 2]), (8, 196, 0.9, [19, 20, 19, 20, 20, 19, 20, 20])]
)
def test_per_frame_budget_is_exact_for_the_ratio(t, n, ratio, budgets):
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(t, n, 4, generator=generator)
    r = run(features, torch.rand(t, n, generator=generator), torch.randn(t, n, 3, generator=generator), ratio)
    assert r.per_frame.tolist() == budgets == frame_budgets(keep_count(ratio, t * n), t)


def test_default_dominant_share_is_the_papers_54_of_64():
    assert DOMINANT_SHARE.default == 54 / 64
    generator = torch.Generator().manual_seed(2)
    features, attention = torch.randn(1, 196, 4, generator=generator), torch.rand(1, 196, generator=generator)
    r = run(features, attention, torch.randn(1, 196, 3, generator=generator), 1 - 64 / 196)  # 64 tokens
    top = attention[0].topk(54).indices
    assert set(top.tolist()) <= set(r.keep.tolist())
    assert (r.features == features[0, r.keep]).all(dim=1).sum() >= 54  # dominant tokens pass unchanged


@st.composite
def zip_inputs(draw):
    t, h, d, dk = draw(st.integers(1, 5)), draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    n = 4 * h
    features = torch.randint(-8, 9, (t, n, d), generator=generator).float()
    attention = torch.randint(0, 6, (t, n), generator=generator).float()  # many ties
    keys = torch.randn(t, n, dk, generator=generator)  # continuous: no similarity ties to break by rounding
    ratio = draw(st.one_of(st.sampled_from([0.0, 0.5, 0.9]), st.floats(0.0, 0.99)))
    share = draw(st.one_of(st.sampled_from([0.0, 1.0, DOMINANT_SHARE.default]), st.floats(0.0, 1.0)))
    return features, attention, keys, ratio, share


@given(zip_inputs())
def test_matches_the_reference_keeps_k_and_merges_means(inputs):
    features, attention, keys, ratio, share = inputs
    t, n, _ = features.shape
    r = run(features, attention, keys, ratio, dominant_share=share)
    k = keep_count(ratio, t * n)
    assert r.k == k and r.keep.shape == (k,) and len(set(r.keep.tolist())) == k
    assert r.per_frame.tolist() == frame_budgets(k, t)
    joined = {}
    expected = reference_visionzip(features, attention, keys, k, share, joined)
    assert r.keep.tolist() == sorted(expected)
    torch.testing.assert_close(r.features, torch.stack([expected[i] for i in sorted(expected)]))
    # merged_into: each merged token's target, -1 for the kept ones (None: no frame had a contextual token)
    merged_into = [-1] * (t * n) if r.merged_into is None else r.merged_into.tolist()
    assert merged_into == [joined.get(i, -1) for i in range(t * n)]


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan"), "0.5", True, None])
def test_dominant_share_out_of_range_names_the_option(share):
    x = torch.randn(1, 8, 2)
    with pytest.raises(ValueError, match=rf"^dominant_share must be a number in \[0, 1\], got {share!r}$"):
        run(x, torch.rand(1, 8), torch.randn(1, 8, 2), 0.5, dominant_share=share)


def test_extras_are_not_options():
    [spec] = options_of("visionzip").values()  # vision_attention, vision_keys are filled from extras=, not listed
    assert (spec.name, spec.default, spec.type, spec.interval) == ("dominant_share", 54 / 64, float, "[0, 1]")
    assert validate(0.9, "visionzip") == {"dominant_share": 54 / 64}  # no extras needed to check a call
    assert validate(0.9, "visionzip", dominant_share=1) == {"dominant_share": 1.0}
    with pytest.raises(ValueError, match=r"^unknown option 'vision_keys' for method 'visionzip'; "
                                         r"accepted options: dominant_share$"):
        validate(0.9, "visionzip", vision_keys=None)


def test_a_users_method_declares_options_and_extras(scratch_registry):
    @register_method("test-attended", options=[OptionSpec("frames", 1, int, (1, 8), "frames to keep from")])
    def attended(features, grid, k, *, frames, vision_attention):
        return Selection(keep=vision_attention[:frames].reshape(-1).argsort(descending=True)[:k])

    assert list(options_of("test-attended")) == ["frames"]
    x, attention = torch.randn(2, 4, 3), torch.tensor([[0.0, 3.0, 1.0, 2.0], [9.0, 9.0, 9.0, 9.0]])
    r = prune(x, (2, 2), 0.75, "test-attended", extras={"vision_attention": attention}, frames=1)
    assert r.keep.tolist() == [1, 3] and r.features is None


def test_missing_or_malformed_extras_are_value_errors():
    x = torch.randn(2, 8, 3)
    with pytest.raises(ValueError, match=r"^method 'visionzip' needs the vision-tower extra 'vision_attention' "
                                         r"\(pass extras= from the encoding, e.g. ClipFeatures.extras\); got: none$"):
        prune(x, (2, 4), 0.5, "visionzip")
    with pytest.raises(ValueError, match="needs the vision-tower extra 'vision_keys'.*got: vision_attention$"):
        prune(x, (2, 4), 0.5, "visionzip", extras={"vision_attention": torch.rand(2, 8)})
    with pytest.raises(ValueError, match=r"^extra 'vision_attention' must be a floating tensor \[T, N\] with T, N = "
                                         r"2, 8 on cpu, got torch.float32 \[2, 7\] on cpu$"):
        prune(x, (2, 4), 0.5, "visionzip", extras={"vision_attention": torch.rand(2, 7), "vision_keys": x})
    with pytest.raises(ValueError, match=r"^extra 'vision_keys' must be finite, got NaN or inf values$"):
        bad = torch.full((2, 8, 3), float("nan"))
        prune(x, (2, 4), 0.5, "visionzip", extras={"vision_attention": torch.rand(2, 8), "vision_keys": bad})
    with pytest.raises(ValueError, match="^unknown option 'vision_attention' for method 'visionzip'"):
        prune(x, (2, 4), 0.5, "visionzip", vision_attention=torch.rand(2, 8))


def test_methods_without_extras_ignore_them_and_return_no_features():
    x = torch.randn(2, 8, 3)
    r = prune(x, (2, 4), 0.5, "uniform", extras={"vision_attention": torch.rand(5)})
    assert r.features is None and r.k == 8


def test_merged_features_follow_keep_after_sorting(scratch_registry):
    @register_method("test-reversed-merge")
    def reversed_merge(features, grid, k, *, vision_attention):
        keep = vision_attention.reshape(-1).argsort(descending=True)[:k]  # any order
        return Selection(keep=keep, features=-features.reshape(-1, features.shape[-1])[keep])

    x = torch.arange(12.0).reshape(1, 6, 2)
    r = prune(x, (2, 3), 0.5, "test-reversed-merge", extras={"vision_attention": torch.arange(6.0)[None]})
    assert r.keep.tolist() == [3, 4, 5]
    assert r.features.tolist() == [[-6, -7], [-8, -9], [-10, -11]]


def test_merged_features_of_the_wrong_shape_break_the_contract(scratch_registry):
    @register_method("test-bad-merge")
    def bad_merge(features, grid, k):
        return Selection(keep=torch.arange(k), features=torch.zeros(k, 1))

    with pytest.raises(RuntimeError, match=r"^method 'test-bad-merge' must return features torch.float32 \[2, 3\] "
                                           r"on cpu, got torch.float32 \[2, 1\] on cpu$"):
        prune(torch.randn(1, 4, 3), (2, 2), 0.5, "test-bad-merge")


def test_merged_into_of_a_method_is_checked(scratch_registry):
    @register_method("test-merged-into")
    def merged(features, grid, k, *, target):
        joined = torch.full((features.shape[0] * features.shape[1],), -1)
        joined[0] = target  # token 0 dropped; tokens 1 and 2 kept
        return Selection(keep=torch.tensor([1, 2]), merged_into=joined)

    x = torch.randn(1, 4, 3)
    assert prune(x, (2, 2), 0.5, "test-merged-into", target=2).merged_into.tolist() == [2, -1, -1, -1]
    assert prune(x, (2, 2), 0.5, "uniform").merged_into is None  # nothing merged
    for target in (3, 4, -2):  # not kept, out of range, below -1
        with pytest.raises(RuntimeError, match=r"^method 'test-merged-into' returned merged_into entries that are "
                                               r"not -1 or a kept index$"):
            prune(x, (2, 2), 0.5, "test-merged-into", target=target)


def test_a_kept_token_merged_into_another_breaks_the_contract(scratch_registry):
    @register_method("test-kept-merged")
    def kept_merged(features, grid, k):
        return Selection(keep=torch.tensor([1, 2]), merged_into=torch.tensor([-1, 2, -1, -1]))

    with pytest.raises(RuntimeError, match="merged_into entries that are not -1 or a kept index"):
        prune(torch.randn(1, 4, 3), (2, 2), 0.5, "test-kept-merged")
    with pytest.raises(RuntimeError, match=r"must return merged_into as a LongTensor \[4\], got torch.int64 \[3\]"):
        register_method("test-short-merged")(
            lambda features, grid, k: Selection(keep=torch.tensor([1, 2]), merged_into=torch.full((3,), -1)))
        prune(torch.randn(1, 4, 3), (2, 2), 0.5, "test-short-merged")


def test_all_work_follows_the_input_device():
    # Tensors made without device= would land on the default device "meta" and break or change the result.
    generator = torch.Generator().manual_seed(3)
    inputs = torch.randn(3, 16, 4, generator=generator), torch.rand(3, 16, generator=generator)
    keys = torch.randn(3, 16, 2, generator=generator)
    expected = run(*inputs, keys, 0.7)
    with torch.device("meta"):
        r = run(*inputs, keys, 0.7)
    assert r.keep.device == r.features.device == inputs[0].device
    assert torch.equal(r.keep, expected.keep) and torch.equal(r.features, expected.features)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    generator = torch.Generator().manual_seed(4)
    features, attention = torch.randn(4, 196, 8, generator=generator), torch.rand(4, 196, generator=generator)
    keys = torch.randn(4, 196, 6, generator=generator)
    cpu = run(features, attention, keys, 0.9)
    gpu = run(features.cuda(), attention.cuda(), keys.cuda(), 0.9)
    assert gpu.keep.is_cuda and torch.equal(gpu.keep.cpu(), cpu.keep)
    torch.testing.assert_close(gpu.features.cpu(), cpu.features)
