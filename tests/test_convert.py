"""`forestprune convert`: original LLaVA-NeXT checkpoints -> LlavaOnevisionForConditionalGeneration.

A tiny checkpoint in the original layout (tests/tiny_original.py) is converted and must give exactly the weights
and logits of the reference LlavaOnevision model it was derived from; broken checkpoints must fail with a clear
error and leave OUT_DIR as it was.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from tiny_original import (
    IMAGE_TOKEN_ID,
    TINY_TOWER,
    TINY_TOWER_CONFIG,
    VIDEO_TOKEN_ID,
    build_tiny_original,
    reference_model,
)
from typer.testing import CliRunner

from fpcli.model.llava.convert import MARKER, convert_checkpoint, ensure_converted, human_size
from fpcli.model.llava.convert_config import VISION_TOWERS
from fpcli.model.llava.convert_keys import ConversionError
from fpcli.model.errors import ModelError

SHARD_BYTES = 40_000  # the tiny model is ~126 kB: several output shards


@pytest.fixture(scope="module", autouse=True)
def tiny_tower():
    """The tiny SigLIP is a vision tower the converter knows, like google/siglip-so400m-patch14-384 (registered for
    this module only, and taken out again even when a test fails)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(VISION_TOWERS, TINY_TOWER, TINY_TOWER_CONFIG)
        yield


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    return build_tiny_original(tmp_path_factory.mktemp("original") / "LLaVA-Video-tiny")


@pytest.fixture(scope="module")
def converted(original, tmp_path_factory) -> Path:
    return convert_checkpoint(original, tmp_path_factory.mktemp("converted") / "out", max_shard_bytes=SHARD_BYTES)


@pytest.fixture(scope="module")
def reference():
    return reference_model()


def video_inputs(frames: int = 2) -> dict[str, torch.Tensor]:
    """Text around one video; transformers' onevision path gives 8x8 tokens per frame plus one newline."""
    side = TINY_TOWER_CONFIG["image_size"]
    pixels = torch.randn(1, frames, 3, side, side, generator=torch.Generator().manual_seed(1))
    ids = [[257, 5, 6] + [VIDEO_TOKEN_ID] * (frames * 8 * 8 + 1) + [7, 8, 258]]
    return {"input_ids": torch.tensor(ids), "pixel_values_videos": pixels}


def assert_same_weights(state: dict[str, torch.Tensor], reference) -> None:
    expected = reference.state_dict()
    assert set(state) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(state[name].float(), tensor), name


def test_converted_checkpoint_equals_reference_model(converted, reference):
    from transformers import LlavaOnevisionForConditionalGeneration

    model, info = LlavaOnevisionForConditionalGeneration.from_pretrained(
        converted, dtype=torch.float32, output_loading_info=True)
    assert (info["missing_keys"], info["unexpected_keys"], info["mismatched_keys"]) == (set(), set(), set())
    assert_same_weights(model.state_dict(), reference)
    with torch.no_grad():
        logits = model.eval()(**video_inputs()).logits
        expected = reference(**video_inputs()).logits
    assert torch.equal(logits, expected)


def test_converted_files(converted):
    from transformers import AutoTokenizer, LlavaOnevisionConfig

    index = json.loads((converted / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all((converted / shard).is_file() for shard in shards)
    with safe_open(converted / shards[0], framework="pt") as f:  # stored as in the original: bf16
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}

    config = LlavaOnevisionConfig.from_pretrained(converted)
    assert config.vision_config.num_hidden_layers == TINY_TOWER_CONFIG["num_hidden_layers"] - 1
    assert config.vision_config.vision_use_head is False
    assert (config.vision_feature_layer, config.vision_feature_select_strategy) == (-1, "full")
    assert config.projector_hidden_act == "gelu"
    assert (config.image_token_id, config.video_token_id) == (IMAGE_TOKEN_ID, VIDEO_TOKEN_ID)
    assert config.text_config.rope_parameters["rope_theta"] == 1_000_000.0

    tokenizer = AutoTokenizer.from_pretrained(converted)
    assert tokenizer.convert_tokens_to_ids(["<image>", "<video>"]) == [IMAGE_TOKEN_ID, VIDEO_TOKEN_ID]
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "<video>\nWhat?"}], tokenize=False,
                                           add_generation_prompt=True)
    assert prompt == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                      "<|im_start|>user\n<video>\nWhat?<|im_end|>\n<|im_start|>assistant\n")

    for name in ("preprocessor_config.json", "video_preprocessor_config.json"):
        processor = json.loads((converted / name).read_text())
        assert processor["size"] == {"height": 30, "width": 30}
        assert processor["image_mean"] == processor["image_std"] == [0.5, 0.5, 0.5]
        assert processor["resample"] == 3
    marker = json.loads((converted / "forestprune.json").read_text())
    assert marker["layout"] == "video" and marker["converted_by"].startswith("forestprune ")
    assert marker["source"].endswith("LLaVA-Video-tiny") and marker["dropped"] == {}


@pytest.mark.parametrize("vision_only", [False, True])
def test_load_model_picks_video_layout(converted, reference, vision_only):
    from fpcli.model import load_model

    llm = load_model(str(converted), device="cpu", dtype="float32", vision_only=vision_only)
    assert llm.layout == "video"
    if vision_only:
        tower = {f"model.vision_tower.{k}": v for k, v in llm.vision.tower.state_dict().items()}
        expected = {k: v for k, v in reference.state_dict().items() if k.startswith("model.vision_tower.")}
        assert tower.keys() == expected.keys() and all(torch.equal(tower[k], expected[k]) for k in tower)
        assert torch.equal(llm.vision.image_newline, reference.model.image_newline)
    else:
        assert_same_weights(llm.model.state_dict(), reference)


def test_unused_tower_tensors_are_dropped(tmp_path, reference):
    source = build_tiny_original(tmp_path / "original", with_unused=True)
    out = convert_checkpoint(source, tmp_path / "out")
    dropped = json.loads((out / "forestprune.json").read_text())["dropped"]
    prefix = "model.vision_tower.vision_tower.vision_model."
    assert dropped and all(k.startswith((prefix + "encoder.layers.2.", prefix + "head.")) for k in dropped)
    assert len([k for k in dropped if ".layers.2." in k]) == 16  # one whole SigLIP layer
    assert (out / "model.safetensors").is_file()  # one shard: no index needed
    from safetensors.torch import load_file

    assert_same_weights(load_file(out / "model.safetensors"), reference)


def _drop(name):
    return lambda tensors: tensors.pop(name)


def _add(name, shape):
    return lambda tensors: tensors.__setitem__(name, torch.zeros(shape, dtype=torch.bfloat16))


@pytest.mark.parametrize(
    "edit, message",
    [
        (_drop("model.layers.1.mlp.up_proj.weight"),
         "lacks 1 tensor(s) the converted model needs: model.language_model.layers.1.mlp.up_proj.weight"),
        (_add("model.mm_projector.4.weight", (32, 32)), "unexpected tensor 'model.mm_projector.4.weight'"),
        (_add("model.image_newline", (31,)),
         "tensor 'model.image_newline' (model-00001-of-00003.safetensors) has shape [31], but the config implies [32]"),
    ],
    ids=["missing", "unexpected", "wrong-shape"],
)
def test_broken_checkpoint_leaves_out_dir_untouched(tmp_path, edit, message):
    source = build_tiny_original(tmp_path / "original", edit=edit)
    parent = tmp_path / "outputs"
    (parent / "out").mkdir(parents=True)
    with pytest.raises(ConversionError) as error:
        convert_checkpoint(source, parent / "out")
    assert message in str(error.value) and isinstance(error.value, ModelError)
    assert [p.name for p in parent.iterdir()] == ["out"] and not any((parent / "out").iterdir())


def test_non_empty_out_dir_needs_force(original, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConversionError, match="OUT_DIR is not empty") as error:
        convert_checkpoint(original, out)
    assert "--force" in error.value.hint
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    convert_checkpoint(original, out, force=True)
    assert not (out / "keep.txt").exists() and (out / "forestprune.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no partial or replaced directory left


def test_interrupted_conversion_keeps_previous_out_dir(original, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    calls = []

    def interrupt(stage, done, total):
        calls.append(stage)
        if len(calls) == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert_checkpoint(original, out, force=True, progress=interrupt, max_shard_bytes=SHARD_BYTES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out / "keep.txt").read_text() == "mine" and len(list(out.iterdir())) == 1


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: (d / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]})),
         "not the original LLaVA-NeXT LlavaQwenForCausalLM"),
        (lambda d: (d / "config.json").write_text((d / "config.json").read_text().replace(TINY_TOWER, "openai/clip")),
         "vision tower 'openai/clip' is not supported"),
        (lambda d: [p.rename(p.with_suffix(".bin")) for p in d.glob("*.safetensors")]
         + [(d / "model.safetensors.index.json").unlink()], "only pickle weights (.bin/.pt)"),
    ],
    ids=["architecture", "vision-tower", "pickle-only"],
)
def test_unsupported_source(tmp_path, change, message):
    source = build_tiny_original(tmp_path / "original")
    change(source)
    with pytest.raises(ConversionError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        convert_checkpoint(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_convert(original, tmp_path):
    from fpcli.cli.app import app

    runner = CliRunner()
    result = runner.invoke(app, ["convert", str(original), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    marker = json.loads((tmp_path / "out" / MARKER).read_text())
    assert re.fullmatch(rf"Converted {re.escape(str(original))} -> {re.escape(str(tmp_path / 'out'))}: "
                        rf"{marker['tensors']} tensors, {re.escape(human_size(marker['total_size']))}"
                        r", layout video, \d+\.\d s\n", result.stdout)
    assert result.stderr.splitlines()[0].startswith(f"Converting {original} into ")
    assert result.stderr.splitlines()[-1] == f"Use it with: forestprune ask VIDEO QUESTION --model {tmp_path / 'out'}"

    again = runner.invoke(app, ["convert", str(original), str(tmp_path / "out")])
    assert again.exit_code == 1 and again.stdout == ""
    assert again.stderr.splitlines() == [f"Error: OUT_DIR is not empty ({tmp_path / 'out'})",
                                         "Hint: pass --force to replace it, or choose a new directory"]

    quiet = runner.invoke(app, ["convert", str(original), str(tmp_path / "out"), "--force", "--quiet"])
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout.startswith("Converted ")


def _fake_hub_cache(cache: Path, repo_id: str, original: Path) -> None:
    """Put `original` into a Hugging Face cache layout, as `hf download` leaves it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in original.iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())


def test_ensure_converted_offline_converts_once(original, tmp_path, monkeypatch):
    repo_id = "tiny-org/LLaVA-Video-tiny"
    _fake_hub_cache(tmp_path / "hub", repo_id, original)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FORESTPRUNE_CACHE", str(tmp_path / "fp"))
    messages: list[str] = []
    stages: set[str] = set()

    path = ensure_converted(repo_id, progress=lambda stage, done, total: stages.add(stage), notify=messages.append)
    assert path == tmp_path / "fp" / "converted" / "tiny-org--LLaVA-Video-tiny"
    assert json.loads((path / "forestprune.json").read_text())["source"] == repo_id
    assert stages == {"convert"} and any("converting it once" in m for m in messages)

    messages.clear()
    assert ensure_converted(repo_id, notify=messages.append) == path and messages == []

    with pytest.raises(ConversionError, match="is not in the local Hugging Face cache") as error:
        ensure_converted("tiny-org/not-cached", notify=messages.append)
    assert "hf download tiny-org/not-cached" in error.value.hint
