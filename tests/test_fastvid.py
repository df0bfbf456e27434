"""fastvid against segments, anchors and merged tokens worked out by hand from FastVID's code, its exact budget, and
end to end (on Qwen2.5-VL the merged features reach the LLM)."""

import json
import math
from pathlib import Path

import pytest
import torch
from fixtures_video import encode
from hypothesis import given
from hypothesis import strategies as st
from test_cli_run import QUESTION, invoke, write_clip

from fpcli.model import GenerationConfig, load_model
from fpcli.model.qwen import session as qwen_session
from fpcli.prune import options_of, prune, validate
from fpcli.prune.fastvid import density_scores, salience, segments
from fpcli.prune.registry import keep_count
from fpcli.prune.visionzip import frame_budgets

# 3 frames of 2x3 tokens in the plane. Frames 0 and 1 point right, frame 2 up.
FRAMES = torch.tensor([
    [[5.0, 0], [2, 0], [0, 2], [1, 1.1], [0.5, 0], [0, 0.5]],
    [[6.0, 0], [1, 0], [1.2, 0], [1.4, 0], [0, 1], [0, 1.3]],
    [[0.0, 5], [0.1, 1], [0, 1.2], [0.2, 1.1], [1, 0], [1.2, 0.1]],
])  # fmt: skip

# By hand, following fastvid_llavaonevision/.../modeling_qwen2.py (LunarShen/FastVID @ a40a109), lines 912-1068, at
# ratio 0.65 (k = round(6.3) = 6, 2 per frame), context_share d = 0.5, anchor_stride p = 2, min_segments c = 2,
# tau 0.9, beta 0.6:
# - DySeg: frame means (1.417, 0.6), (1.6, 0.383), (0.417, 1.4); cosines 0.987 (0 -> 1) and 0.50 (1 -> 2). The c - 1 = 1
#   least similar transition and every one below 0.9 is 1 -> 2: segments {0, 1} and {2}.
# - Per frame 2 tokens: int(2 * 0.5) = 1 context, 1 salient. Segment {0, 1} has 2 context tokens, all in its anchor
#   frame 1 (its last frame; frame 0 is 1 frame back, not a multiple of p = 2); segment {2}: 1 in frame 2.
# - Salient (attention of the frame's mean, i.e. the largest dot product with it): token 0 of each frame (dots 7.08,
#   9.6, 7.0).
# - Frame 1's anchors among tokens 1..5, distances / sqrt(2): densities exp(-mean of squared distances to the 4
#   nearest, self included): token 1 e^-0.275, 2 e^-0.315, 3 e^-0.395, 4 e^-0.566, 5 e^-0.739. delta: token 1 (the
#   densest) the largest distance, |(1.4,0) - (0,1.3)| / sqrt 2 = 1.351; token 4, to its nearest denser (token 1),
#   1.0; tokens 2, 3, 5 0.141, 0.141, 0.212. rho * delta: 1.026, 0.103, 0.095, 0.568, 0.101: anchors tokens 1, 4.
# - Frame 2's anchor among tokens 1..5: token 1 is the densest (e^-0.235; token 3 e^-0.24, 2 e^-0.318, 4 e^-0.464,
#   5 e^-0.509), so rho * delta = 0.791 * 1.151 = 0.910 beats token 4's 0.629 * 0.951 = 0.598.
# - Merging, segment {0, 1}: its non-salient tokens join frame 1's anchor of highest cosine. To (1, 0): (2,0),
#   (0.5,0) of frame 0 and (1,0), (1.2,0), (1.4,0) of frame 1: mean (1.22, 0), 5 members, weight max(0.6, 1/6) = 0.6:
#   0.6 (1, 0) + 0.4 (1.22, 0) = (1.088, 0). To (0, 1): (0,2), (1,1.1), (0,0.5), (0,1), (0,1.3): mean (0.2, 1.18):
#   0.6 (0, 1) + 0.4 (0.2, 1.18) = (0.08, 1.072).
# - Segment {2}: all 5 non-salient tokens join (0.1, 1): mean (0.5, 0.68):
#   0.6 (0.1, 1) + 0.4 (0.5, 0.68) = (0.26, 0.872).
HAND_OPTIONS = {"min_segments": 2, "tau": 0.9, "context_share": 0.5, "anchor_stride": 2, "beta": 0.6}


def test_crafted_video_segments_anchors_and_merged_tokens():
    assert segments(FRAMES.mean(dim=1), 2, 0.9).tolist() == [0, 0, 1]
    assert salience(FRAMES).argmax(dim=1).tolist() == [0, 0, 0]
    r = prune(FRAMES, (2, 3), 0.65, "fastvid", **HAND_OPTIONS)
    assert r.keep.tolist() == [0, 6, 7, 10, 12, 13]
    expected = torch.tensor([[5.0, 0], [6, 0], [1.088, 0], [0.08, 1.072], [0, 5], [0.26, 0.872]])
    torch.testing.assert_close(r.features, expected)


def test_a_segment_with_two_anchor_frames_merges_every_token_into_both():
    # 5 frames of (1,0), (1.1,0), (0, 3+t); one segment (c = 1 and tau = -1 cut nothing). p = 4: anchor frames 4 (the
    # last) and 0 (4 back). k = 2 at ratio 0.85 (2.25), all context (d = 1): budgets 0 1 0 1 0, so the segment's 2
    # context tokens go 1 to frame 0 and 1 to frame 4. In either frame (1,0) is the densest (mean squared distance
    # (0.01 + 10..) / 6) and farthest from anything denser, so it is the anchor: flat 0 and 12. Each anchor frame has
    # one anchor, so all 15 tokens of the segment join each: mean ((5 + 5.5) / 15, (3+4+5+6+7) / 15) = (0.7, 5/3),
    # and 0.6 (1, 0) + 0.4 (0.7, 5/3) = (0.88, 2/3) for both.
    x = torch.tensor([[[1.0, 0], [1.1, 0], [0, 3 + t]] for t in range(5)])
    r = prune(x, (1, 3), 0.85, "fastvid", min_segments=1, tau=-1.0, context_share=1.0, anchor_stride=4)
    assert r.keep.tolist() == [0, 12] and r.per_frame.tolist() == [1, 0, 0, 0, 1]
    torch.testing.assert_close(r.features, torch.tensor([[0.88, 2 / 3], [0.88, 2 / 3]]))


def test_segments_cut_below_tau_and_at_the_least_similar_transitions():
    angles = torch.tensor([0.0, 0.1, 0.5, 0.55, 1.5, 1.52])  # consecutive cosines .995 .921 .999 .362 1.0
    frames = torch.stack([angles.cos(), angles.sin()], dim=1)
    assert segments(frames, 1, 0.9).tolist() == [0, 0, 0, 0, 1, 1]  # only 3 -> 4 is below 0.9
    assert segments(frames, 3, 0.9).tolist() == [0, 0, 1, 1, 2, 2]  # and the next least similar, 1 -> 2
    assert segments(frames, 99, 0.9).tolist() == [0, 1, 2, 3, 4, 5]  # more than there are: every frame alone


@st.composite
def videos(draw):
    t, h, w, d = draw(st.integers(1, 9)), draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 6))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = torch.randn(t, h * w, d, generator=generator)
    if draw(st.booleans()):  # a static stretch: long segments, several anchor frames
        x[t // 3 :] = x[t // 3].clone() + 0.01 * torch.randn(t - t // 3, h * w, d, generator=generator)
    ratio = draw(st.one_of(st.sampled_from([0.0, 0.5, 0.9, 0.99]), st.floats(0.0, 0.999)))
    options = {"min_segments": draw(st.integers(1, 10)), "tau": draw(st.floats(-1, 1)),
               "context_share": draw(st.floats(0, 1)), "anchor_stride": draw(st.integers(1, 5))}
    return x, (h, w), ratio, options


@given(videos())
def test_exactly_k_salient_tokens_unchanged_and_deterministic(video):
    x, grid, ratio, options = video
    t, n, _ = x.shape
    r = prune(x, grid, ratio, "fastvid", **options)
    k = keep_count(ratio, t * n)
    assert r.keep.shape == (k,) and r.features.shape == (k, x.shape[-1]) and int(r.per_frame.sum()) == k
    # Each frame's most attended tokens, b - floor(b d) of its budget b, pass as they are.
    share = options["context_share"]
    salient = [b - math.floor(b * share) for b in frame_budgets(k, t)]
    order = salience(x).sort(dim=1, descending=True, stable=True).indices
    for frame, count in enumerate(salient):
        flat = (order[frame, :count] + frame * n).tolist()
        assert set(flat) <= set(r.keep.tolist())
        rows = torch.searchsorted(r.keep, torch.tensor(flat, dtype=torch.long))
        assert torch.equal(r.features[rows], x.reshape(t * n, -1)[flat])
    again = prune(x.clone(), grid, ratio, "fastvid", **options)
    assert torch.equal(r.keep, again.keep) and torch.equal(r.features, again.features)


def test_densities_are_per_frame_across_chunks():
    generator = torch.Generator().manual_seed(10)
    x, candidate = torch.randn(37, 12, 3, generator=generator), torch.rand(37, 12, generator=generator) > 0.3
    together = density_scores(x, candidate)  # 3 chunks of frames
    alone = torch.cat([density_scores(x[i : i + 1], candidate[i : i + 1]) for i in range(37)])
    torch.testing.assert_close(together, alone)
    assert torch.equal(together.isinf(), ~candidate)


def test_keeping_everything_of_single_frame_segments_changes_nothing():
    x = torch.randn(4, 9, 5, generator=torch.Generator().manual_seed(7))
    r = prune(x, (3, 3), 0.0, "fastvid", min_segments=4)  # every frame its own segment, every token kept
    assert r.keep.tolist() == list(range(36))
    torch.testing.assert_close(r.features, x.reshape(36, 5))  # an anchor alone: 0.6 a + 0.4 a


def test_float16_in_float16_out():
    r = prune(FRAMES.half(), (2, 3), 0.65, "fastvid", **HAND_OPTIONS)
    assert r.keep.tolist() == [0, 6, 7, 10, 12, 13] and r.features.dtype == torch.float16


def test_all_work_follows_the_input_device():
    x = torch.randn(6, 16, 4, generator=torch.Generator().manual_seed(8))
    expected = prune(x, (4, 4), 0.7, "fastvid")
    with torch.device("meta"):
        r = prune(x, (4, 4), 0.7, "fastvid")
    assert r.keep.device == r.features.device == x.device
    assert torch.equal(r.keep, expected.keep) and torch.equal(r.features, expected.features)


def test_options_declared_with_the_authors_defaults():
    assert validate(0.9, "fastvid") == {"min_segments": 8, "tau": 0.9, "context_share": 0.4, "anchor_stride": 4,
                                        "beta": 0.6}
    assert [spec.interval for spec in options_of("fastvid").values()] == ["[1, 2**63)", "[-1, 1]", "[0, 1]",
                                                                           "[1, 2**63)", "[0, 1]"]
    with pytest.raises(ValueError, match=r"^anchor_stride must be an int in \[1, 2\*\*63\), got 0$"):
        prune(FRAMES, (2, 3), 0.5, "fastvid", anchor_stride=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    x = torch.randn(16, 196, 32, generator=torch.Generator().manual_seed(9))
    cpu, gpu = prune(x, (14, 14), 0.9, "fastvid"), prune(x.cuda(), (14, 14), 0.9, "fastvid")
    assert torch.equal(gpu.keep.cpu(), cpu.keep)
    torch.testing.assert_close(gpu.features.cpu(), cpu.features)


def test_ask_on_onevision_and_qwen25(tmp_path: Path, tiny_onevision_dir: Path, tiny_qwen25_dir: Path,
                                     monkeypatch: pytest.MonkeyPatch):
    clip = write_clip(tmp_path / "a.mp4")
    llava = invoke("ask", clip, QUESTION, "--model", tiny_onevision_dir, "--frames", "3", "--max-new-tokens", "2",
                   "--method", "fastvid", "--json")
    assert llava.exit_code == 0, llava.stderr
    record = json.loads(llava.stdout)
    assert record["method"] == "fastvid" and record["tokens"]["visual_after"] == 19 == sum(record["per_frame_kept"])

    merged = []  # what the Qwen session hands to the LLM input in place of the kept tokens
    assemble = qwen_session.assemble
    monkeypatch.setattr(qwen_session, "assemble", lambda *args: merged.append(args[-1]) or assemble(*args))
    encode(tmp_path / "long.mp4", "libx264", 64, 48, 150)
    qwen = invoke("ask", tmp_path / "long.mp4", QUESTION, "--model", tiny_qwen25_dir, "--frames", "5",
                  "--max-new-tokens", "2", "--method", "fastvid", "--opt", "tau=0.84", "--json")
    assert qwen.exit_code == 0, qwen.stderr
    record = json.loads(qwen.stdout)
    assert record["tokens"]["visual_after"] == 16 == sum(record["per_frame_kept"])  # 3 groups x 6x9 = 162 at 0.9
    assert [None if m is None else tuple(m.shape) for m in merged] == [(16, 32)]


def test_qwen3_session_answers_like_fresh_calls(tiny_qwen3_dir: Path):
    # Merged tokens and Qwen3-VL's DeepStack features (the anchor's): a session's prefix equals a fresh prompt's.
    from test_qwen_model import make_clip

    llm = load_model(tiny_qwen3_dir, device="cpu")
    clip, generation = make_clip(6), GenerationConfig(max_new_tokens=4)
    session = llm.start(llm.encode_clip(clip), ratio=0.8, method="fastvid")
    for question in (QUESTION, "Describe the scene."):
        asked = session.ask(question, generation)
        fresh = llm.answer(clip, question, ratio=0.8, method="fastvid", generation=generation)
        assert asked.generated_ids == fresh.generated_ids and asked.to_dict()["tokens"] == fresh.to_dict()["tokens"]
    assert session.prefills == 1
