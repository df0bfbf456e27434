"""features_for on tiny checkpoints: a hit skips decoding and the tower and gives the same features bit for bit."""

import dataclasses
import os
import shutil
from pathlib import Path

import pytest
import torch

from fpcli.model import load_model
from fpcli.model.cached_encode import EncoderIdentity, features_for
from fpcli.model.clip_features import ClipFeatures
from fpcli.model.feature_cache import FeatureCache
from fpcli.video import VideoError, sample_frames

SAMPLE = Path(__file__).resolve().parents[1] / "sample_videos" / "moving_object.mp4"


class Encoder:
    """A loaded model as features_for's `load`, counting the loads asked for and the tower runs."""

    def __init__(self, llm, monkeypatch):
        self.llm, self.loads, self.calls = llm, 0, 0
        original = llm.encode_clip

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(llm, "encode_clip", counted)

    def __call__(self):
        self.loads += 1
        return self.llm


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


def run(encoder, video, cache, sampling=None, decoder=None, **kwargs):
    return features_for(video, sampling or {"num_frames": 4}, cache, encoder, decode=decoder or Decoder(), **kwargs)


def assert_same_features(got: ClipFeatures, want: ClipFeatures) -> None:
    assert got.features.dtype == want.features.dtype and got.features.device == want.features.device
    assert torch.equal(got.features.view(torch.uint8), want.features.view(torch.uint8))
    for fact in ("video", "grid", "timestamps", "duration", "frame_indices"):
        assert getattr(got, fact) == getattr(want, fact), fact
    assert got.extras.keys() == want.extras.keys() == {"vision_attention", "vision_keys"}  # what visionzip needs
    for name, value in want.extras.items():
        assert got.extras[name].dtype == value.dtype and torch.equal(got.extras[name], value), name


def test_miss_then_hit_skips_decoding_and_encoding(ov, video, tmp_path, monkeypatch):
    encoder, decoder, cache = Encoder(ov, monkeypatch), Decoder(), FeatureCache(tmp_path / "cache")
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
    assert hit.warnings == []


def test_hit_reports_the_name_it_was_asked_by(ov, video, tmp_path, monkeypatch):
    encoder, cache = Encoder(ov, monkeypatch), FeatureCache(tmp_path / "cache")
    run(encoder, video, cache)
    monkeypatch.chdir(tmp_path)
    hit = run(encoder, Path("clip.mp4"), cache)
    assert (hit.cache, hit.video) == ("hit", "clip.mp4")


def test_no_cache_is_off_and_writes_nothing(ov, video, tmp_path, monkeypatch):
    encoder = Encoder(ov, monkeypatch)
    first, second = run(encoder, video, None), run(encoder, video, None)
    assert (first.cache, second.cache, encoder.calls) == ("off", "off", 2)
    assert_same_features(first, second)


def test_each_key_component_misses(ov, tiny_video_dir, video, tmp_path, monkeypatch):
    encoder, cache = Encoder(ov, monkeypatch), FeatureCache(tmp_path / "cache")
    run(encoder, video, cache)
    assert run(encoder, video, cache, {"num_frames": 3}).cache == "miss"
    assert run(encoder, video, cache, {"num_frames": 3}).cache == "hit"
    stat = video.stat()
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert run(encoder, video, cache).cache == "miss"
    other = Encoder(load_model(tiny_video_dir, device="cpu"), monkeypatch)  # another checkpoint and layout
    assert run(other, video, cache).cache == "miss"
    assert run(other, video, cache).cache == "hit"
    assert (encoder.calls, other.calls) == (3, 1)


def test_bfloat16_features_come_back_bit_identical_and_miss_the_float32_entry(tiny_onevision_dir, video, tmp_path,
                                                                              monkeypatch):
    cache = FeatureCache(tmp_path / "cache")
    f32 = Encoder(load_model(tiny_onevision_dir, device="cpu", dtype="float32"), monkeypatch)
    bf16 = Encoder(load_model(tiny_onevision_dir, device="cpu", dtype="bfloat16"), monkeypatch)
    eager = Encoder(load_model(tiny_onevision_dir, device="cpu", dtype="bfloat16", attn="eager"), monkeypatch)
    assert run(f32, video, cache).cache == "miss"
    fresh = run(bf16, video, cache)
    assert fresh.cache == "miss" and fresh.features.dtype == torch.bfloat16
    hit = run(bf16, video, cache)
    assert hit.cache == "hit"
    assert_same_features(hit, fresh)
    assert run(eager, video, cache).cache == "miss"  # another attention kernel rounds differently


def test_a_corrupt_entry_is_recomputed_with_one_warning(ov, video, tmp_path, monkeypatch):
    encoder, cache = Encoder(ov, monkeypatch), FeatureCache(tmp_path / "cache")
    fresh = run(encoder, video, cache)
    (entry,) = (tmp_path / "cache").iterdir()
    entry.write_bytes(entry.read_bytes()[:-7])
    again = run(encoder, video, cache)
    assert again.cache == "miss" and encoder.calls == 2
    assert again.warnings == [f"ignored a feature cache entry (truncated): {entry}; it is rewritten"]
    assert_same_features(again, fresh)
    hit = run(encoder, video, cache)
    assert (hit.cache, hit.warnings) == ("hit", [])


def test_an_unwritable_cache_warns_in_the_features(ov, video, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    encoder, cache = Encoder(ov, monkeypatch), FeatureCache(tmp_path / "file" / "cache")
    first = run(encoder, video, cache)
    assert first.cache == "miss"
    assert first.warnings == [
        f"the feature cache in {tmp_path}/file/cache cannot be written (Not a directory); running without it"
    ]
    assert run(encoder, video, cache).warnings == []  # said once


def test_a_missing_video_is_the_video_layers_error(ov, tmp_path, monkeypatch):
    with pytest.raises(VideoError, match=r"^file not found \("):
        run(Encoder(ov, monkeypatch), tmp_path / "nope.mp4", FeatureCache(tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()


class Order:
    """Records what happened in which order: decoding and loading the model."""

    def __init__(self, llm):
        self.llm, self.events = llm, []

    def load(self):
        self.events.append("load")
        return self.llm

    def decode(self, path, progress=None, **sampling):
        self.events.append("decode")
        return sample_frames(path, progress=progress, **sampling)


def test_a_miss_decodes_before_loading_and_a_likely_hit_loads_without_decoding(ov, video, tmp_path):
    cache, identity = FeatureCache(tmp_path / "cache"), EncoderIdentity.of(ov)
    order = Order(ov)
    miss = features_for(video, {"num_frames": 4}, cache, order.load, identity=identity, decode=order.decode)
    assert (miss.cache, order.events[:2]) == ("miss", ["decode", "load"])
    order.events.clear()
    hit = features_for(video, {"num_frames": 4}, cache, order.load, identity=identity, decode=order.decode)
    assert hit.cache == "hit" and "decode" not in order.events and "load" in order.events


def test_the_planned_identity_is_the_loaded_models(ov, tiny_onevision_dir):
    from fpcli.model import resolve_model

    planned = EncoderIdentity.planned(resolve_model(tiny_onevision_dir), "cpu", "auto", "sdpa")
    assert planned == EncoderIdentity.of(ov) == EncoderIdentity(ov.path, "onevision", "float32", "cpu", "sdpa")


def test_check_runs_before_the_tower_and_on_a_hit(ov, video, tmp_path, monkeypatch):
    encoder, cache, seen = Encoder(ov, monkeypatch), FeatureCache(tmp_path / "cache"), []

    def too_long(llm, frames, clip):
        seen.append((frames, clip.duration))
        raise ValueError("too long")

    with pytest.raises(ValueError, match="too long"):
        run(encoder, video, cache, check=too_long)
    assert encoder.calls == 0 and cache.info().entries == 0
    stored = run(encoder, video, cache)
    with pytest.raises(ValueError, match="too long"):
        run(encoder, video, cache, check=too_long)
    assert seen == [(4, stored.duration)] * 2 and encoder.calls == 1


def test_a_hit_keeps_the_clips_own_warnings(ov, video, tmp_path, monkeypatch):
    def cut_short(path, progress=None, **sampling):
        return dataclasses.replace(sample_frames(path, progress=progress, **sampling), warnings=["the file ends early"])

    encoder, cache = Encoder(ov, monkeypatch), FeatureCache(tmp_path / "cache")
    assert run(encoder, video, cache, decoder=cut_short).warnings == ["the file ends early"]
    hit = run(encoder, video, cache, decoder=cut_short)
    assert (hit.cache, hit.warnings) == ("hit", ["the file ends early"])


def test_reused_features_count_their_cost_once(ov, video, tmp_path, monkeypatch):
    features = run(Encoder(ov, monkeypatch), video, None)
    again = features.reused()
    assert (again.decode_s, again.encode_s, again.cache_load_s) == (0.0, 0.0, 0.0)
    assert again.features is features.features and features.encode_s > 0
