"""Vision-tower extras on the tiny checkpoints: hand-computed attention equals eager attention, pooled like the
features, hooks gone afterwards; merged features reach the LLM input."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fpcli.model import ModelError, load_model
from fpcli.model.clip_features import ClipFeatures
from fpcli.model.llava.encode import pool
from fpcli.model.llava.preprocess import preprocess_frames
from fpcli.model.llava.sequence import visual_sequence
from fpcli.model.llava.vision_extras import capture_queries_keys, encoder_layers, feature_layer_index, layer_extras


def frames(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 24, 40, 3), dtype=np.uint8)


@pytest.fixture(scope="module", params=["onevision", "video"])
def towers(request, tiny_onevision_dir, tiny_video_dir):
    """The same checkpoint with SDPA (what encoding uses) and with eager attention (the reference)."""
    path = tiny_onevision_dir if request.param == "onevision" else tiny_video_dir
    return load_model(path, device="cpu", vision_only=True), load_model(path, device="cpu", vision_only=True,
                                                                         attn="eager")


def eager_attention(llm, pixels: torch.Tensor) -> torch.Tensor:
    """Mean over heads and queries of the feature layer's attention weights, from eager attention itself: [F, L]."""
    layers = encoder_layers(llm.vision.tower)
    index = feature_layer_index(llm.vision.feature_layer, len(layers))
    with torch.inference_mode():
        out = llm.vision.tower(pixels, output_attentions=True, return_dict=True)
    return out.attentions[index].mean(dim=(1, 2))


def test_hand_computed_attention_equals_eager_attention(towers):
    sdpa, eager = towers
    pixels = preprocess_frames(frames(3), sdpa.preprocessor)
    layer = encoder_layers(sdpa.vision.tower)[-1]  # vision_feature_layer -1
    with torch.inference_mode(), capture_queries_keys(layer) as captured:
        sdpa.vision.tower(pixels)
    extras = layer_extras(layer, captured)
    expected = eager_attention(eager, pixels)
    assert extras["vision_attention"].shape == (3, 225) and extras["vision_attention"].dtype == torch.float32
    torch.testing.assert_close(extras["vision_attention"], expected, atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(extras["vision_attention"].sum(dim=1), torch.ones(3))  # every row sums to 1, so does their mean


def test_encoding_returns_extras_pooled_like_the_features(towers):
    sdpa, eager = towers
    clip = frames(5, seed=1)
    encoded = sdpa.encode(clip, chunk=2)  # chunks joined in frame order
    t, n, _ = encoded.features.shape
    pixels = preprocess_frames(clip, sdpa.preprocessor)
    side, layout = sdpa.vision.patches_per_side, sdpa.layout
    expected_attention = pool(eager_attention(eager, pixels)[..., None], side, layout)[..., 0]
    layer = encoder_layers(eager.vision.tower)[-1]
    with torch.inference_mode():
        hidden = eager.vision.tower(pixels, output_hidden_states=True).hidden_states[-2]
        keys = layer.self_attn.k_proj(layer.layer_norm1(hidden))  # [F, L, C]
    heads = keys.shape[-1] // layer.self_attn.head_dim
    expected_keys = pool(keys.view(5, 225, heads, -1).mean(dim=2), side, layout)
    assert sorted(encoded.extras) == ["vision_attention", "vision_keys"]
    assert encoded.extras["vision_attention"].shape == (t, n) and encoded.extras["vision_keys"].shape == (t, n, 8)
    torch.testing.assert_close(encoded.extras["vision_attention"], expected_attention, atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(encoded.extras["vision_keys"], expected_keys, atol=1e-5, rtol=1e-5)


def test_hooks_are_removed_and_sdpa_stays_on(towers):
    sdpa, _ = towers
    tower = sdpa.vision.tower
    projections = [m for name, m in tower.named_modules() if name.endswith(("q_proj", "k_proj"))]
    before = sdpa.encode(frames(2)).features
    assert all(not m._forward_hooks for m in projections)
    assert tower.config._attn_implementation == "sdpa"
    attention = encoder_layers(tower)[-1].self_attn
    with pytest.raises(RuntimeError), capture_queries_keys(encoder_layers(tower)[-1]):
        assert len(attention.q_proj._forward_hooks) == len(attention.k_proj._forward_hooks) == 1
        tower(torch.zeros(1, 3, 7, 7))  # too small for the patch embedding: the hooks go anyway
    assert all(not m._forward_hooks for m in projections)
    torch.testing.assert_close(sdpa.encode(frames(2)).features, before, atol=0, rtol=0)


@pytest.mark.parametrize(
    ("feature_layer", "layers", "index"), [(-1, 26, 25), (-2, 26, 24), (26, 26, 25), (3, 26, 2), ([-2, -5], 26, 24)]
)
def test_feature_layer_index(feature_layer, layers, index):
    assert feature_layer_index(feature_layer, layers) == index


def test_feature_layer_zero_has_no_attention():
    with pytest.raises(ModelError, match="vision_feature_layer 0 is the patch embeddings"):
        feature_layer_index(0, 26)


def test_visual_sequence_uses_merged_features():
    features = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)  # 2 frames of 2x2
    keep = torch.tensor([1, 2, 7])
    merged = torch.tensor([[10.0], [20.0], [30.0]])
    newline = torch.tensor([-1.0])
    onevision, count = visual_sequence(features, keep, (2, 2), newline, "onevision", merged)
    assert count == 1 and onevision[:, 0].tolist() == [10, 20, 30, -1]
    video, rows = visual_sequence(features, keep, (2, 2), newline, "video", merged)
    assert rows == 4 and video[:, 0].tolist() == [10, -1, 20, -1, -1, 30, -1]
    plain, _ = visual_sequence(features, keep, (2, 2), newline, "onevision")
    assert plain[:, 0].tolist() == [1, 2, 7, -1]


def test_visionzip_merged_tokens_enter_the_prompt(tiny_onevision_dir):
    llm = load_model(tiny_onevision_dir, device="cpu")
    clip = SimpleNamespace(path="clip.mp4", frames=frames(4, seed=2), indices=np.arange(4),
                           timestamps=np.arange(4) / 2.0, duration=2.0)
    features = llm.encode_clip(clip)
    assert sorted(features.extras) == ["vision_attention", "vision_keys"]  # the encoding's extras, carried along
    session = llm.start(features, ratio=0.75, method="visionzip")
    pruned = session.pruned
    assert pruned.method == "visionzip" and pruned.per_frame.tolist() == [16, 16, 16, 16]
    flat = features.features.reshape(-1, features.features.shape[-1])  # [T*N, D]
    assert not torch.equal(pruned.features, flat[pruned.keep])
    embeds = session.prompt_embeds("What is it?")[0]  # [L, D]; the visual block is the K merged tokens, then newline
    start = next(i for i in range(len(embeds)) if torch.equal(embeds[i], pruned.features[0]))
    torch.testing.assert_close(embeds[start : start + pruned.k], pruned.features, atol=0, rtol=0)
    cached = ClipFeatures.from_parts(features.tensors(), features.meta())  # what the feature cache stores and loads
    assert torch.equal(cached.extras["vision_keys"], features.extras["vision_keys"])
    again = llm.start(cached, ratio=0.75, method="visionzip")
    assert torch.equal(again.visual, session.visual)
