"""cached_features on tiny checkpoints: a hit skips decoding and the tower and gives the same features bit for bit."""

import os
import shutil
from pathlib import Path

import pytest
import torch

from fpcli.model import load_model
from fpcli.model.cached_encode import cached_features
from fpcli.model.clip_features import ClipFeatures
from fpcli.model.feature_cache import FeatureCache
from fpcli.video import VideoError, sample_frames

SAMPLE = Path(__file__).resolve().parents[1] / "sample_videos" / "moving_object.mp4"


class Encoder:
    """A VideoLLM seen through the encode_clip contract (VideoLLM.encode + ClipFeatures), counting its calls."""

    def __init__(self, llm):
        self.llm, self.path, self.layout, self.dtype, self.device = llm, llm.path, llm.layout, llm.dtype, llm.device
        self.calls = 0

    def encode_clip(self, clip, progress=None) -> ClipFeatures:
        self.calls += 1
        encoded = self.llm.encode(clip.frames, progress=progress)
        return ClipFeatures(
            video=str(clip.path),
            features=encoded.features,
            grid=encoded.grid,
            timestamps=[float(t) for t in clip.timestamps],
            duration=float(clip.duration),
            frame_indices=[int(i) for i in clip.indices],
            encode_s=encoded.encode_s,
        )


class Decoder:
    def __init__(self):
        self.calls = []

    def __call__(self, path, progress=None, **sampling):
        self.calls.append(sampling)
        return sample_frames(path, progress=progress, **sampling)


@pytest.fixture(scope="module")
def ov(tiny_onevision_dir):
    return load_model(tiny_onevision_dir, device="cpu")


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return Path(shutil.copy(SAMPLE, tmp_path / "clip.mp4"))


def run(llm, video, cache, sampling=None, decoder=None):
    return cached_features(llm, video, sampling or {"num_frames": 4}, cache, decoder or Decoder())


def assert_same_features(got: ClipFeatures, want: ClipFeatures) -> None:
    assert got.features.dtype == want.features.dtype and got.features.device == want.features.device
    assert torch.equal(got.features.view(torch.uint8), want.features.view(torch.uint8))
    for fact in ("video", "grid", "timestamps", "duration", "frame_indices"):
        assert getattr(got, fact) == getattr(want, fact), fact


def test_miss_then_hit_skips_decoding_and_encoding(ov, video, tmp_path):
    encoder, decoder, cache = Encoder(ov), Decoder(), FeatureCache(tmp_path / "cache")
    fresh = run(encoder, video, cache, decoder=decoder)
    assert (fresh.cache, encoder.calls, decoder.calls) == ("miss", 1, [{"num_frames": 4}])
    assert fresh.decode_s > 0 and fresh.encode_s > 0 and fresh.cache_load_s == 0
    assert cache.info().entries == 1
    hit = run(encoder, video, cache, decoder=decoder)
    assert (hit.cache, encoder.calls, len(decoder.calls)) == ("hit", 1, 1)
    assert (hit.decode_s, hit.encode_s) == (0.0, 0.0) and hit.cache_load_s > 0
    assert_same_features(hit, fresh)
    assert hit.features.shape == (4, 64, fresh.features.shape[2]) and hit.grid == (8, 8)
    assert hit.frame_indices == [int(i) for i in sample_frames(video, 4).indices]
    assert hit.warnings == [] and hit.extras == {}


def test_hit_reports_the_name_it_was_asked_by(ov, video, tmp_path, monkeypatch):
    encoder, cache = Encoder(ov), FeatureCache(tmp_path / "cache")
    run(encoder, video, cache)
    monkeypatch.chdir(tmp_path)
    hit = run(encoder, Path("clip.mp4"), cache)
    assert (hit.cache, hit.video) == ("hit", "clip.mp4")


def test_no_cache_is_off_and_writes_nothing(ov, video, tmp_path):
    encoder = Encoder(ov)
    first, second = run(encoder, video, None), run(encoder, video, None)
    assert (first.cache, second.cache, encoder.calls) == ("off", "off", 2)
    assert_same_features(first, second)


def test_each_key_component_misses(ov, tiny_video_dir, video, tmp_path):
    encoder, cache = Encoder(ov), FeatureCache(tmp_path / "cache")
    run(encoder, video, cache)
    assert run(encoder, video, cache, {"num_frames": 3}).cache == "miss"
    assert run(encoder, video, cache, {"num_frames": 3}).cache == "hit"
    stat = video.stat()
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert run(encoder, video, cache).cache == "miss"
    other = Encoder(load_model(tiny_video_dir, device="cpu"))  # another checkpoint and layout
    assert run(other, video, cache).cache == "miss"
    assert run(other, video, cache).cache == "hit"
    assert (encoder.calls, other.calls) == (3, 1)


def test_bfloat16_features_come_back_bit_identical_and_miss_the_float32_entry(tiny_onevision_dir, video, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    f32 = Encoder(load_model(tiny_onevision_dir, device="cpu", dtype="float32"))
    bf16 = Encoder(load_model(tiny_onevision_dir, device="cpu", dtype="bfloat16"))
    assert run(f32, video, cache).cache == "miss"
    fresh = run(bf16, video, cache)
    assert fresh.cache == "miss" and fresh.features.dtype == torch.bfloat16
    hit = run(bf16, video, cache)
    assert hit.cache == "hit"
    assert_same_features(hit, fresh)


def test_a_corrupt_entry_is_recomputed_with_one_warning(ov, video, tmp_path):
    encoder, cache = Encoder(ov), FeatureCache(tmp_path / "cache")
    fresh = run(encoder, video, cache)
    (entry,) = (tmp_path / "cache").iterdir()
    entry.write_bytes(entry.read_bytes()[:-7])
    again = run(encoder, video, cache)
    assert again.cache == "miss" and encoder.calls == 2
    assert again.warnings == [f"ignored a feature cache entry (truncated): {entry}; it is rewritten"]
    assert_same_features(again, fresh)
    hit = run(encoder, video, cache)
    assert (hit.cache, hit.warnings) == ("hit", [])


def test_an_unwritable_cache_warns_in_the_features(ov, video, tmp_path):
    (tmp_path / "file").write_text("x")
    encoder, cache = Encoder(ov), FeatureCache(tmp_path / "file" / "cache")
    first = run(encoder, video, cache)
    assert first.cache == "miss"
    assert first.warnings == [
        f"the feature cache in {tmp_path}/file/cache cannot be written (Not a directory); running without it"
    ]
    assert run(encoder, video, cache).warnings == []  # said once


def test_a_missing_video_is_the_video_layers_error(ov, tmp_path):
    with pytest.raises(VideoError, match=r"^file not found \("):
        run(Encoder(ov), tmp_path / "nope.mp4", FeatureCache(tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()
