"""vidcom2 against budgets and kept sets worked out by hand from VidCom2's code, its exact budget, and end to end."""

import json
import math
from pathlib import Path

import pytest
import torch
from fixtures_video import encode
from hypothesis import given
from hypothesis import strategies as st
from test_cli_run import QUESTION, invoke, write_clip

from fpcli.prune import options_of, prune, validate
from fpcli.prune.registry import keep_count
from fpcli.prune.vidcom2 import frame_counts, vidcom2_scores


def crafted() -> torch.Tensor:
    """2 frames of 4 tokens, 4 channels. Channels 0 and 3 swing by +-10 / +-20 (variance 100 / 400), channels 1 and
    2 hold unit vectors: frame 0 is (1,0) (1,0) (1,0) (0,1), frame 1 is (1,0) (0,1) (-1,0) (0,-1)."""
    plane = torch.tensor([[[1.0, 0], [1, 0], [1, 0], [0, 1]], [[1, 0], [0, 1], [-1, 0], [0, -1]]])  # [2, 4, 2]
    swing = torch.tensor([1.0, -1, 1, -1]).repeat(2, 1)  # [2, 4]
    return torch.stack([10 * swing, plane[..., 0], plane[..., 1], 20 * swing], dim=-1)  # [2, 4, 4]


# By hand, following token_compressor/vidcom2/vidcom2.py (xuyang-liu16/VidCom2 @ 944a17d):
# - select_low_var_channels keeps the 2 calmest channels: 1 (variance 31/64) and 2 (23/64), not 0 or 3.
# - The unit vectors are already normalised. Video centre g = sum / 8 = ((3,1) + (0,0)) / 8 = (3/8, 1/8); frame centres
#   c0 = (3/4, 1/4), c1 = (0, 0).
# - Squared distances to g: (1,0) 26/64, (0,1) 58/64, (-1,0) 122/64, (0,-1) 90/64; to c0: (1,0) 1/8, (0,1) 9/8;
#   to c1: 1.
# - K(d) = sum over a in 1/8..2 of exp(-d / 2a): K(26/64) = 3.026, K(58/64) = 2.027, K(122/64) = 1.178,
#   K(90/64) = 1.507, K(1/8) = 4.177, K(9/8) = 1.766, K(1) = 1.907.
# - Uniqueness u = -mean K(x, g): frame 0 -(3 * 3.026 + 2.027) / 4 = -2.777, frame 1 -(3.026 + 2.027 + 1.178 + 1.507)
#   / 4 = -1.935. softmax((u - max u) / 0.01) = (e^-84.2, 1) ~ (0, 1): retention base * (1 + p - 1/2) is base/2 for
#   frame 0 and 3 base/2 for frame 1.
# - Token scores K(x, g) + K(x, c_t): frame 0 (1,0) 7.203 (three of them), (0,1) 3.793; frame 1 (1,0) 4.933,
#   (0,1) 3.934, (-1,0) 3.085, (0,-1) 3.414.
CASES = [
    # ratio 0.5: k = 4, base 1/2: frame 0 keeps round(0.25 * 4) = 1 (its (0,1), token 3), frame 1 round(0.75 * 4) = 3
    # (scores 3.085, 3.414, 3.934: tokens 2, 3, 1, flat 6, 7, 5). 1 + 3 = k: nothing to settle.
    (0.5, [1, 3], [3, 5, 6, 7]),
    # ratio 0.9: k = round(0.8) = 1, base 1/8: frame 0 round(0.25) = 0 -> at least 1 (token 3, score 3.793), frame 1
    # round(0.75) = 1 (token 2, score 3.085). Two for k = 1: the higher score (frame 0's 3.793) is dropped.
    (0.9, [1, 1], [6]),
    # ratio 0.125: k = 7, base 7/8: frame 0 round(1.75) = 2 (token 3, then token 0 of the three tied 7.203s), frame 1
    # 21/16 capped at 1 -> all 4. Six for k = 7: the lowest score left, 7.203 of tokens 1 and 2, adds token 1.
    (0.125, [2, 4], [0, 1, 3, 4, 5, 6, 7]),
]


@pytest.mark.parametrize(("ratio", "counts", "keep"), CASES)
def test_crafted_video_budgets_and_kept_tokens(ratio, counts, keep):
    x = crafted()
    uniqueness, score = vidcom2_scores(x)
    k = keep_count(ratio, 8)
    assert frame_counts(uniqueness, k / 8, 4, 0.01).tolist() == counts
    r = prune(x, (2, 2), ratio, "vidcom2")
    assert r.keep.tolist() == keep and r.features is None
    torch.testing.assert_close(score[0, 3], torch.tensor(3.7926), atol=1e-4, rtol=0)
    torch.testing.assert_close(score[1], torch.tensor([4.9333, 3.9337, 3.0845, 3.4142]), atol=1e-4, rtol=0)


def test_the_noisy_channels_are_not_scored():
    # With the swinging channels scaled down to variance below the unit channels', they are the ones scored and
    # the picture changes: the tokens' signs on them decide.
    x = crafted()
    calm = x.clone()
    calm[..., 0] /= 100
    calm[..., 3] /= 100
    assert prune(x, (2, 2), 0.5, "vidcom2").keep.tolist() != prune(calm, (2, 2), 0.5, "vidcom2").keep.tolist()


def test_temperature_moves_the_budget():
    # A high temperature makes the shares equal: base * (1 + 1/2 - 1/2) = 1/2 of each frame, 2 + 2.
    x = crafted()
    uniqueness, _ = vidcom2_scores(x)
    assert frame_counts(uniqueness, 0.5, 4, 1e6).tolist() == [2, 2]
    assert prune(x, (2, 2), 0.5, "vidcom2", frame_temperature=1e6).per_frame.tolist() == [2, 2]


@st.composite
def videos(draw):
    t, h, w, d = draw(st.integers(1, 8)), draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 6))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = torch.randn(t, h * w, d, generator=generator)
    if draw(st.booleans()):  # a static stretch: repeated frames
        x[t // 2 :] = x[t // 2].clone()
    ratio = draw(st.one_of(st.sampled_from([0.0, 0.5, 0.9, 0.99]), st.floats(0.0, 0.999)))
    return x, (h, w), ratio


@given(videos())
def test_exactly_k_and_the_authors_counts_when_they_add_up(video):
    x, grid, ratio = video
    t, n, _ = x.shape
    r = prune(x, grid, ratio, "vidcom2")
    k = keep_count(ratio, t * n)
    assert r.keep.shape == (k,) and int(r.per_frame.sum()) == k
    counts = frame_counts(vidcom2_scores(x)[0], k / (t * n), n, 0.01)
    if int(counts.sum()) == k:  # the authors' per-frame selection stands as it is
        assert r.per_frame.tolist() == counts.tolist()
    again = prune(x.clone(), grid, ratio, "vidcom2")
    assert torch.equal(r.keep, again.keep)


def test_float16_scores_in_float32():
    x = crafted()
    assert prune(x.half(), (2, 2), 0.5, "vidcom2").keep.tolist() == [3, 5, 6, 7]


def test_all_work_follows_the_input_device():
    x = torch.randn(4, 16, 6, generator=torch.Generator().manual_seed(5))
    expected = prune(x, (4, 4), 0.7, "vidcom2")
    with torch.device("meta"):
        r = prune(x, (4, 4), 0.7, "vidcom2")
    assert r.keep.device == x.device and torch.equal(r.keep, expected.keep)


def test_option_declared_and_checked():
    [spec] = options_of("vidcom2").values()
    assert (spec.name, spec.default, spec.type, spec.interval) == ("frame_temperature", 0.01, float, "(0, inf)")
    assert validate(0.9, "vidcom2") == {"frame_temperature": 0.01}
    with pytest.raises(ValueError, match=r"^frame_temperature must be a number in \(0, inf\), got 0$"):
        prune(crafted(), (2, 2), 0.5, "vidcom2", frame_temperature=0)
    assert math.isinf(spec.range[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    x = torch.randn(8, 196, 32, generator=torch.Generator().manual_seed(6))
    assert torch.equal(prune(x.cuda(), (14, 14), 0.9, "vidcom2").keep.cpu(), prune(x, (14, 14), 0.9, "vidcom2").keep)


def test_ask_on_onevision_and_qwen25(tmp_path: Path, tiny_onevision_dir: Path, tiny_qwen25_dir: Path):
    clip = write_clip(tmp_path / "a.mp4")
    llava = invoke("ask", clip, QUESTION, "--model", tiny_onevision_dir, "--frames", "3", "--max-new-tokens", "2",
                   "--method", "vidcom2", "--json")
    assert llava.exit_code == 0, llava.stderr
    record = json.loads(llava.stdout)
    assert record["method"] == "vidcom2" and record["tokens"]["visual_after"] == 19  # 3 x 8x8 at 0.9
    assert sum(record["per_frame_kept"]) == 19
    encode(tmp_path / "long.mp4", "libx264", 64, 48, 150)
    qwen = invoke("ask", tmp_path / "long.mp4", QUESTION, "--model", tiny_qwen25_dir, "--frames", "5",
                  "--max-new-tokens", "2", "--method", "vidcom2", "--opt", "frame_temperature=0.5", "--json")
    assert qwen.exit_code == 0, qwen.stderr
    record = json.loads(qwen.stdout)
    assert record["tokens"]["visual_after"] == 16 == sum(record["per_frame_kept"])  # 3 groups x 6x9 = 162 at 0.9
