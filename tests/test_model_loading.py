"""fpcli.model loading: resolution of specs and layouts, devices, error messages, vision-only loading."""

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from fpcli.model import PROFILES, ModelError, ModelProfile, load_model, register_profile, resolve_model


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_profiles_registry():
    assert {"llava-ov-0.5b", "llava-ov-7b", "llava-ov-72b", "llava-video-7b"} <= set(PROFILES)
    assert PROFILES["llava-ov-7b"].repo_id == "llava-hf/llava-onevision-qwen2-7b-ov-hf"
    assert (PROFILES["llava-ov-0.5b"].layout, PROFILES["llava-ov-0.5b"].default_frames) == ("onevision", 32)
    video = PROFILES["llava-video-7b"]
    assert (video.repo_id, video.layout, video.default_frames, video.needs_conversion) == (
        "lmms-lab/LLaVA-Video-7B-Qwen2",
        "video",
        64,
        True,
    )
    with pytest.raises(ValueError, match="already registered"):
        register_profile(ModelProfile("llava-ov-7b", "x/y", "onevision", 32))
    with pytest.raises(ValueError, match="layout"):
        register_profile(ModelProfile("new-one", "x/y", "grid", 32))


def test_layout_resolution(tiny_onevision_dir, tiny_video_dir):
    assert resolve_model(tiny_onevision_dir).layout == "onevision"  # no forestprune.json -> default
    video = resolve_model(tiny_video_dir)
    assert (video.layout, video.default_frames) == ("video", 64)  # from forestprune.json
    explicit = resolve_model(tiny_video_dir, layout="onevision")  # the caller wins
    assert (explicit.layout, explicit.default_frames) == ("onevision", 32)
    assert resolve_model(str(tiny_onevision_dir)).name == str(tiny_onevision_dir)
    with pytest.raises(ValueError, match="layout must be one of onevision, video"):
        resolve_model(tiny_onevision_dir, layout="grid")


def test_load_both_layouts(tiny_onevision_dir, tiny_video_dir):
    ov = load_model(tiny_onevision_dir, device="cpu")
    assert (ov.layout, ov.default_frames, ov.device, ov.dtype) == ("onevision", 32, torch.device("cpu"), torch.float32)
    assert ov.load_s > 0 and not ov.vision_only
    assert type(ov.model).__name__ == "LlavaOnevisionForConditionalGeneration"
    vid = load_model(tiny_video_dir, device="cpu")
    assert (vid.layout, vid.default_frames) == ("video", 64)
    again = load_model(tiny_onevision_dir, device="cpu")
    assert again is not ov and again.model is not ov.model  # a new model per call: the caller holds it
    assert load_model(tiny_onevision_dir, device="cpu", dtype="bfloat16").dtype == torch.bfloat16


def test_missing_weights_is_a_clear_error(tiny_onevision_dir, tmp_path):
    ckpt = _copy(tiny_onevision_dir, tmp_path / "ckpt")
    (ckpt / "model.safetensors").unlink()
    no_weights = r"has no model weights \(model\.safetensors or model\.safetensors\.index\.json\)"
    with pytest.raises(ModelError, match=no_weights):
        load_model(ckpt, device="cpu")
    torch.save({}, ckpt / "pytorch_model.bin")
    with pytest.raises(ModelError, match=r"has only pickle weights \(\.bin/\.pt\); forestprune loads safetensors only"):
        load_model(ckpt, device="cpu")


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(ModelError, match="is not a model checkpoint: it has no config.json"):
        load_model(tmp_path, device="cpu")
    with pytest.raises(ModelError, match="is not a profile .*a local directory or a Hugging Face id"):
        load_model("no-such-model", device="cpu")


def test_offline_uncached_id_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(ModelError) as err:
        load_model("llava-ov-0.5b", device="cpu")
    assert str(err.value) == (
        f"model llava-hf/llava-onevision-qwen2-0.5b-ov-hf is not in the local Hugging Face cache ({tmp_path}/hf/hub) "
        "and HF_HUB_OFFLINE is set"
    )
    assert err.value.hint == (
        "download it with `hf download llava-hf/llava-onevision-qwen2-0.5b-ov-hf --exclude '*.bin'` where the hub is "
        "reachable, or pass a local directory"
    )


def test_device_dtype_attention_errors(tiny_onevision_dir):
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="CUDA is not available; use --device cpu"):
            load_model(tiny_onevision_dir, device="cuda")
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:N"):
        load_model(tiny_onevision_dir, device="gpu")
    with pytest.raises(ValueError, match="dtype must be auto, bfloat16, float16, float32"):
        load_model(tiny_onevision_dir, device="cpu", dtype="fp8")
    with pytest.raises(ValueError, match="attn must be one of sdpa, eager, flash_attention_2"):
        load_model(tiny_onevision_dir, device="cpu", attn="flash")
    missing = "needs the flash-attn package (pip install flash-attn)"
    problem = missing if importlib.util.find_spec("flash_attn") is None else "runs only on CUDA in bfloat16 or float16"
    with pytest.raises(ModelError) as err:
        load_model(tiny_onevision_dir, device="cpu", attn="flash_attention_2")
    assert str(err.value) == f"attention flash_attention_2 {problem}; use sdpa"


def test_vision_only_reads_no_llm_weights(tiny_onevision_dir, tmp_path):
    """Shard the checkpoint into vision and LLM files, delete the LLM shard: vision-only loading still works."""
    ckpt = _copy(tiny_onevision_dir, tmp_path / "sharded")
    tensors = load_file(ckpt / "model.safetensors")
    (ckpt / "model.safetensors").unlink()
    vision_prefixes = ("vision_tower.", "multi_modal_projector.", "image_newline")
    shards = {"vision.safetensors": {}, "llm.safetensors": {}}
    for key, value in tensors.items():
        shards["vision.safetensors" if key.startswith(vision_prefixes) else "llm.safetensors"][key] = value
    for name, part in shards.items():
        save_file(part, ckpt / name, metadata={"format": "pt"})
    weight_map = {key: name for name, part in shards.items() for key in part}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (ckpt / "llm.safetensors").unlink()

    stats = load_model(ckpt, device="cpu", vision_only=True)
    assert stats.vision_only and stats.model is None and stats.tokenizer is None
    full = load_model(tiny_onevision_dir, device="cpu")
    for name, value in full.vision.tower.state_dict().items():
        assert torch.equal(stats.vision.tower.state_dict()[name], value), name
    for name, value in full.vision.projector.state_dict().items():
        assert torch.equal(stats.vision.projector.state_dict()[name], value), name
    assert torch.equal(stats.vision.image_newline, full.vision.image_newline)
    frames = torch.zeros(2, 8, 8, 3, dtype=torch.uint8).numpy()
    clip = SimpleNamespace(path="c.mp4", frames=frames, indices=[0, 1], timestamps=[0.0, 0.5], duration=1.0)
    features = stats.encode_clip(clip)
    assert features.features.shape == (2, 64, 32)  # the vision tower alone encodes
    for needs_llm in (lambda: stats.start(features, ratio=0.5, method="uniform"),
                      lambda: stats.check_fits(2, "question", 0.5, "uniform")):
        with pytest.raises(ModelError, match="vision_only=True"):
            needs_llm()
    with pytest.raises(ModelError, match=rf"^cannot load {re.escape(str(ckpt))}: "):
        load_model(ckpt, device="cpu")  # the LLM shard is gone, so a full load must fail


def test_wrong_model_type(tiny_onevision_dir, tmp_path):
    ckpt = _copy(tiny_onevision_dir, tmp_path / "qwen")
    config = json.loads((ckpt / "config.json").read_text())
    config["model_type"] = "llava_qwen"
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="run `forestprune convert` first"):
        load_model(ckpt, device="cpu")


def test_hub_id_from_local_cache_offline(tiny_onevision_dir, tmp_path, monkeypatch):
    """A hub id already in the Hugging Face cache (its real on-disk layout) loads with HF_HUB_OFFLINE=1."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--tiny-org--tiny-onevision"
    shutil.copytree(tiny_onevision_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    resolved = resolve_model("tiny-org/tiny-onevision")
    assert resolved.path == repo / "snapshots" / commit
    assert (resolved.name, resolved.layout) == ("tiny-org/tiny-onevision", "onevision")
    assert load_model("tiny-org/tiny-onevision", device="cpu").name == "tiny-org/tiny-onevision"


def test_llava_video_profile_resolves_through_convert(tiny_video_dir, monkeypatch):
    """llava-video-7b asks fpcli.model.llava.convert.ensure_converted for its converted copy (imported at resolve time)."""
    calls = []

    def ensure_converted(repo_id, progress=None):
        calls.append(repo_id)
        return tiny_video_dir

    monkeypatch.setitem(sys.modules, "fpcli.model.llava.convert", SimpleNamespace(ensure_converted=ensure_converted))
    resolved = resolve_model("llava-video-7b")
    assert calls == ["lmms-lab/LLaVA-Video-7B-Qwen2"]
    assert (resolved.name, resolved.path, resolved.layout, resolved.default_frames) == (
        "llava-video-7b",
        tiny_video_dir,
        "video",
        64,
    )


def test_transformers4_key_names_load_full_and_vision_only(tiny_onevision_dir, tmp_path):
    """llava-hf's published checkpoints nest SigLIP as `vision_tower.vision_model.*` (transformers 4 names)."""
    ckpt = _copy(tiny_onevision_dir, tmp_path / "legacy")
    tensors = load_file(ckpt / "model.safetensors")
    legacy = {
        key.replace("vision_tower.", "vision_tower.vision_model.", 1) if key.startswith("vision_tower.") else key: value
        for key, value in tensors.items()
    }
    assert any(key.startswith("vision_tower.vision_model.") for key in legacy)
    save_file(legacy, ckpt / "model.safetensors", metadata={"format": "pt"})

    reference = load_model(tiny_onevision_dir, device="cpu")
    for vision_only in (False, True):
        llm = load_model(ckpt, device="cpu", vision_only=vision_only)
        for name, value in reference.vision.tower.state_dict().items():
            assert torch.equal(llm.vision.tower.state_dict()[name], value), (vision_only, name)
