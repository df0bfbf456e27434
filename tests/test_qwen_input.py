"""Qwen-VL video input: preprocessing against transformers' PIL processor and the documented rules, frame sampling,
profiles and architecture detection."""

import json

import numpy as np
import pytest
import torch
from fixtures_video import encode
from hypothesis import given
from hypothesis import strategies as st

from fpcli.model import PROFILES, known_default_frames, resolve_model
from fpcli.model.sampling import MAX_FRAMES, SamplingRule, sample_clip, sampling_options, sampling_rule
from fpcli.model.qwen.video_input import VideoSpec, geometry, group_timestamps, patchify, seconds_per_group
from fpcli.model.qwen.video_input import smart_resize

REAL_QWEN25 = VideoSpec(14, 2, 2, 128 * 28 * 28, 768 * 28 * 28, False, (0.5,) * 3, (0.5,) * 3)
REAL_QWEN3 = VideoSpec(16, 2, 2, 4096, 25165824, True, (0.5,) * 3, (0.5,) * 3)


@pytest.mark.parametrize("size", [(37, 53), (24, 40), (9, 130), (300, 200)])
def test_two_equal_frames_equal_transformers_image_processor(tiny_qwen25_dir, tiny_qwen3_dir, size):
    """An image is a one-group video of two equal frames: the PIL Qwen2-VL image processor must agree exactly."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    frame = np.random.default_rng(1).integers(0, 256, (*size, 3), dtype=np.uint8)
    for directory in (tiny_qwen25_dir, tiny_qwen3_dir):
        config = json.loads((directory / "preprocessor_config.json").read_text())
        reference = Qwen2VLImageProcessorPil(
            **{k: v for k, v in config.items() if k not in ("image_processor_type", "processor_class")}
        )(frame, return_tensors="pt")
        spec = VideoSpec.from_dir(directory, qwen3_rules=False)
        geo = geometry(spec, 2, *size, max_pixels=config["size"]["longest_edge"])
        assert torch.equal(geo.grid_thw(), reference["image_grid_thw"])
        torch.testing.assert_close(patchify(np.stack([frame, frame]), spec, geo), reference["pixel_values"],
                                   atol=1e-6, rtol=0)  # fmt: skip


def test_patch_order_is_group_block_patch_channel_frame_row_col():
    """Literal reference of the flattening rule: pixel values that encode (frame, y, x) land where documented."""
    spec = VideoSpec(2, 2, 2, 16, 10_000, False, (0.0,) * 3, (1.0,) * 3, rescale_factor=1.0)
    frames_n, height, width = 4, 8, 12
    y, x = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    frames = np.stack([np.stack([y, x, np.full_like(y, 10 * f)], axis=-1) for f in range(frames_n)]).astype(np.uint8)
    geo = geometry(spec, frames_n, height, width)
    assert (geo.height, geo.width, geo.grid) == (8, 12, (2, 3))
    patches = patchify(frames, spec, geo).view(-1, 3, 2, 2, 2)  # [tokens*4, C, frame, py, px]
    k = torch.arange(len(patches))
    group, block, sub = k // 24, (k % 24) // 4, k % 4
    top = (block // 3) * 4 + (sub // 2) * 2  # merged row * 4 px + sub-row * 2 px
    left = (block % 3) * 4 + (sub % 2) * 2
    assert torch.equal(patches[:, 0, 0, :, 0], (top[:, None] + torch.arange(2)).float())
    assert torch.equal(patches[:, 1, 0, 0, :], (left[:, None] + torch.arange(2)).float())
    assert torch.equal(patches[:, 2, :, 0, 0], (10 * (2 * group[:, None] + torch.arange(2))).float())


@given(st.integers(1, 4000), st.integers(1, 4000), st.sampled_from([28, 32]))
def test_smart_resize_equals_transformers(height, width, factor):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as reference

    if max(height, width) / min(height, width) > 200:
        return
    lo, hi = 128 * factor * factor, 768 * factor * factor
    assert smart_resize(height, width, factor, lo, hi) == reference(height, width, factor, lo, hi)


def test_frame_pixel_caps_follow_qwen_vl_utils_and_qwen3_processor():
    # Qwen2.5-VL (qwen-vl-utils): min(768 tokens, 90% of 128000 tokens * 2 / T), at least 1.05 * min_pixels
    assert REAL_QWEN25.frame_pixel_cap(32) == 768 * 28 * 28
    assert REAL_QWEN25.frame_pixel_cap(768) == int(128000 * 28 * 28 * 0.9) * 2 // 768 == 235200
    assert REAL_QWEN25.frame_pixel_cap(100000) == int(128 * 28 * 28 * 1.05)
    # Qwen3-VL: min(768 tokens, longest_edge / T), at least 1.05 * shortest_edge
    assert REAL_QWEN3.frame_pixel_cap(16) == 768 * 32 * 32
    assert REAL_QWEN3.frame_pixel_cap(64) == 25165824 // 64
    assert REAL_QWEN3.frame_pixel_cap(10**6) == int(4096 * 1.05)
    real = geometry(REAL_QWEN25, 64, 720, 1280)
    assert (real.height, real.width, real.groups, real.grid) == (560, 1008, 32, (20, 36))  # 720 tokens of at most 768


def test_group_times_and_seconds_per_group():
    assert group_timestamps(np.array([0.0, 0.5, 1.0]), 2) == [0.25, 1.0]
    assert seconds_per_group(8, 4.0, 2) == 1.0  # 8 frames in 4 s is 2 fps: one group is 1 s
    assert seconds_per_group(1, 0.04, 2) == 1.0  # transformers' default for a single frame


def test_sampling_rules(tmp_path):
    qwen = sampling_rule("qwen3-vl", 768)
    assert qwen == SamplingRule(768, 2.0, 4) and sampling_rule("video", 64) == SamplingRule(64)

    def never() -> SamplingRule:
        raise AssertionError("the layout was looked up for a sampling that does not depend on it")

    assert sampling_options(None, None, lambda: qwen) == {"num_frames": 768, "fps": 2.0, "max_frames": 768}
    assert sampling_options(None, 1.0, lambda: qwen) == {"num_frames": 768, "fps": 1.0, "max_frames": 768}
    assert sampling_options(None, 1.0, lambda: SamplingRule(32)) == {"num_frames": MAX_FRAMES, "fps": 1.0,
                                                                      "max_frames": MAX_FRAMES}  # fmt: skip
    assert sampling_options(None, None, lambda: SamplingRule(32)) == {"num_frames": 32}
    assert sampling_options(9, None, never) == {"num_frames": 9}
    assert sampling_options(16, 1.0, never) == {"num_frames": 16, "fps": 1.0, "max_frames": 16}
    short = encode(tmp_path / "short.mp4", "libx264", 64, 48, 30)  # 1.2 s at 25 fps: 2 fps gives 3 frames
    long = encode(tmp_path / "long.mp4", "libx264", 64, 48, 150)  # 6 s
    assert len(sample_clip(short, qwen)) == 4  # raised to min_frames, uniformly
    assert len(sample_clip(long, qwen)) == 12
    assert len(sample_clip(long, qwen, fps=1.0)) == 6
    assert len(sample_clip(long, qwen, frames=5, fps=2.0)) == 5  # --frames caps the rate
    assert len(sample_clip(short, qwen, frames=3)) == 3  # a count asked for is kept


def test_profiles_and_detection(tiny_qwen25_dir, tiny_qwen3_dir):
    expected = {
        "qwen2.5-vl-3b": ("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2.5-vl"),
        "qwen2.5-vl-7b": ("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2.5-vl"),
        "qwen3-vl-2b": ("Qwen/Qwen3-VL-2B-Instruct", "qwen3-vl"),
        "qwen3-vl-4b": ("Qwen/Qwen3-VL-4B-Instruct", "qwen3-vl"),
        "qwen3-vl-8b": ("Qwen/Qwen3-VL-8B-Instruct", "qwen3-vl"),
    }
    assert {name: (PROFILES[name].repo_id, PROFILES[name].layout) for name in expected} == expected
    assert known_default_frames("qwen3-vl-4b") == 768
    assert resolve_model(tiny_qwen25_dir).layout == "qwen2.5-vl"
    resolved = resolve_model(tiny_qwen3_dir)
    assert (resolved.layout, resolved.default_frames, resolved.profile) == ("qwen3-vl", 768, None)


def test_without_a_video_config_the_video_pixel_defaults_apply(tiny_qwen25_dir, tmp_path):
    """Qwen2.5-VL's hub repos ship only the image config, whose limits are for images (16384 tokens)."""
    config = json.loads((tiny_qwen25_dir / "preprocessor_config.json").read_text())
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**config, "min_pixels": 3136,
                                                                   "max_pixels": 12845056}))  # fmt: skip
    spec = VideoSpec.from_dir(tmp_path, qwen3_rules=False)
    assert (spec.min_pixels, spec.longest_edge, spec.mean) == (128 * 16, 768 * 16, tuple(config["image_mean"]))
    video = VideoSpec.from_dir(tiny_qwen25_dir, qwen3_rules=False)
    assert (video.min_pixels, video.longest_edge) == (4 * 16, 64 * 16)
