"""In-LLM pruning on the tiny checkpoints: hand-computed attention, hooks, KV cache, decoding, budgets, FLOPs."""


import numpy as np
import pytest
import torch

from fpcli.model import GenerationConfig, load_model
from fpcli.model.flops import prefill_flops, prefill_flops_per_layer
from fpcli.model.generate import decode
from fpcli.model.inllm.prefill import prefill_pruned
from fpcli.model.inllm.registry import in_llm_methods
from fpcli.model.inllm.span import VisualSpan
from fpcli.model.inllm.attention import last_token_attention
from fpcli.model.inllm.hooks import decoder_layers
from fpcli.model.inllm.methods.sttm import STTM, sttm_nodes
from fpcli.model.llava.sequence import visual_sequence
from fpcli.prune.registry import keep_count

IN_LLM_METHODS = tuple(name for name, method in in_llm_methods().items() if method.pre_budget is None)

# The tiny LLM has 2 decoder layers, so the methods act at layer 1 (FastV's K, STTM's layer) where the real
# models use 2; STTM at layer 0 is the authors' 72B setting.
SMALL = {"fastv": {"K": 1}, "framefusion": {}, "sttm": {"layer": 1}}
GREEDY = GenerationConfig(max_new_tokens=6)


@pytest.fixture(scope="module")
def ov(tiny_onevision_dir):
    return load_model(tiny_onevision_dir, device="cpu")


@pytest.fixture(scope="module")
def ov_eager(tiny_onevision_dir):
    return load_model(tiny_onevision_dir, device="cpu", attn="eager")


@pytest.fixture(scope="module")
def video_llm(tiny_video_dir):
    return load_model(tiny_video_dir, device="cpu")


def encoded(llm, frames=4, seed=0):
    rng = np.random.default_rng(seed)
    return llm.encode(rng.integers(0, 256, (frames, 24, 40, 3), dtype=np.uint8))


def prompt_inputs(llm, features, grid, question="What is the man doing?"):
    """The unpruned inputs_embeds [1, L, D] of a question about `features` [T, N, D], and its visual span."""
    frames = features.shape[0]
    ids, start = llm.prompt_ids([question], [], frames / 2, [t / 2 for t in range(frames)])
    all_tokens = torch.arange(features.shape[0] * features.shape[1])
    visual, _ = visual_sequence(features, all_tokens, grid, llm.vision.image_newline, llm.layout)
    with torch.inference_mode():
        text = llm.model.get_input_embeddings()(ids)  # [L_text, D]; the visual sequence replaces the placeholder
        embeds = torch.cat([text[:start], visual.to(text.dtype), text[start + 1 :]])[None]
    return embeds, VisualSpan(start, frames, grid, llm.layout)


def language_model(llm):
    return llm.model.model.language_model


@pytest.fixture(scope="module")
def ov_inputs(ov):
    enc = encoded(ov)
    return prompt_inputs(ov, enc.features, enc.grid)


def test_hand_computed_attention_row_equals_eager_attention(ov_eager):
    enc = encoded(ov_eager)
    embeds, _ = prompt_inputs(ov_eager, enc.features, enc.grid)
    lm = language_model(ov_eager)
    with torch.inference_mode():
        out = lm(inputs_embeds=embeds, output_attentions=True, output_hidden_states=True)
        positions = torch.arange(embeds.shape[1])[None]
        cos, sin = lm.rotary_emb(embeds, positions)
        for index, layer in enumerate(lm.layers):
            expected = out.attentions[index][0, :, -1].mean(0)  # [L]: last query, mean over heads
            ours = last_token_attention(layer, out.hidden_states[index], cos, sin)
            torch.testing.assert_close(ours, expected.float(), atol=1e-6, rtol=1e-5)
            assert ours.sum().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("method", IN_LLM_METHODS)
def test_hooks_leave_the_model_unchanged(ov, ov_inputs, method):
    embeds, span = ov_inputs
    with torch.inference_mode():
        before = ov.model(inputs_embeds=embeds).logits
    pruned = prefill_pruned(ov.model, embeds, span, 0.75, method, SMALL[method])
    assert pruned.kept_visual < span.tokens
    with torch.inference_mode():
        after = ov.model(inputs_embeds=embeds).logits
    assert torch.equal(before, after)
    assert all(not layer._forward_pre_hooks for layer in decoder_layers(ov.model))


def test_hooks_are_removed_when_a_method_fails(ov, ov_inputs, monkeypatch):
    embeds, span = ov_inputs

    def fail(self, step):
        raise RuntimeError("boom")

    monkeypatch.setattr(STTM, "reduce", fail)
    with pytest.raises(RuntimeError, match="boom"):
        prefill_pruned(ov.model, embeds, span, 0.75, "sttm", {"layer": 1})
    assert all(not layer._forward_pre_hooks for layer in decoder_layers(ov.model))


def test_fastv_keeps_the_visual_tokens_layer_k_minus_1_attends_most(ov, ov_eager, ov_inputs):
    embeds, span = ov_inputs
    with torch.inference_mode():
        attention = language_model(ov_eager)(inputs_embeds=embeds, output_attentions=True).attentions
    row = attention[0][0, :, -1].mean(0)  # layer K-1 = 0 saw every token
    visual = span.token_positions()
    k = keep_count(0.75, span.tokens)
    expected = visual[row[visual].topk(k).indices].sort().values
    pruned = prefill_pruned(ov.model, embeds, span, 0.75, "fastv", {"K": 1})
    kept = pruned.kept_positions
    assert torch.equal(kept[torch.isin(kept, visual)], expected)
    assert pruned.visual_lengths == [span.tokens, k] and pruned.visual_before == span.tokens
    assert pruned.layer_lengths == [embeds.shape[1], embeds.shape[1] - span.tokens + k]
    assert [layer.keys.shape[2] for layer in pruned.cache.layers] == [len(kept), len(kept)]
    report = pruned.to_dict()
    assert report["kept_visual"] == k and report["visual_before"] == span.tokens and report["options"] == {"K": 1}
    assert report["next_position"] == embeds.shape[1] and report["prefill_tflops"] == pruned.prefill_tflops


def _manual_run(llm, embeds, kept, layer_k, fed_ids, positions=None, next_position=None):
    """Logits of a plain layer-by-layer run: the prompt embeds [1, P, D] (position ids `positions`, default 0..P-1)
    through layers < K in full, then only the prompt indices `kept`; fed tokens (decoding, from `next_position`)
    see only the kept prompt tokens in every layer, as the cropped KV cache gives them."""
    lm = language_model(llm)
    prompt = embeds.shape[1]
    positions = torch.arange(prompt) if positions is None else positions
    next_position = prompt if next_position is None else next_position
    with torch.inference_mode():
        sequence = torch.cat([embeds, lm.embed_tokens(torch.tensor(fed_ids))[None]], dim=1)  # [1, S, D]
        total = sequence.shape[1]
        positions = torch.cat([positions, torch.arange(next_position, next_position + total - prompt)])
        survivors = torch.cat([kept, torch.arange(prompt, total)])
        mask = torch.ones(total, total, dtype=torch.bool).tril()
        mask[prompt:, :prompt] &= torch.isin(torch.arange(prompt), kept)
        hidden = sequence
        for index, layer in enumerate(lm.layers):
            if index == layer_k:
                hidden, positions = hidden[:, survivors], positions[survivors]
                mask = torch.ones(len(survivors), len(survivors), dtype=torch.bool).tril()
            cos, sin = lm.rotary_emb(hidden, positions[None])
            hidden = layer(hidden, attention_mask=mask[None, None], position_embeddings=(cos, sin),
                           position_ids=positions[None])
        return llm.model.lm_head(lm.norm(hidden))[0]  # [S', V]


def test_fastv_prefill_and_decoding_equal_a_manual_run(ov, ov_inputs):
    embeds, span = ov_inputs
    pruned = prefill_pruned(ov.model, embeds, span, 0.75, "fastv", {"K": 1})
    out = decode(ov.model, pruned.last_logits, pruned.cache, GREEDY, set(), next_position=pruned.next_position)
    assert len(out.ids) == GREEDY.max_new_tokens
    logits = _manual_run(ov, embeds, pruned.kept_positions, 1, out.ids[:-1])
    last_prompt = len(pruned.kept_positions) - 1
    torch.testing.assert_close(logits[last_prompt], pruned.last_logits[0], atol=1e-5, rtol=1e-5)
    assert logits[last_prompt:].argmax(-1).tolist() == out.ids


def test_sttm_at_layer_0_equals_a_plain_forward_of_the_merged_sequence(ov, ov_inputs):
    embeds, span = ov_inputs
    options = {"layer": 0, "tau_s": 0.85, "tau_t": 0.6, "root_level": 1}
    pruned = prefill_pruned(ov.model, embeds, span, 0.75, "sttm", options)
    h, w = span.grid
    slots = span.token_positions()
    video = embeds[0, slots].view(span.frames, h, w, -1)
    k = keep_count(0.75, span.tokens)
    nodes = sttm_nodes(video, k, tau_s=0.85, tau_t=0.6, root_level=1)
    corner = slots[nodes.tlbr[:, 0] * h * w + nodes.tlbr[:, 1] * w + nodes.tlbr[:, 2]]
    merged = embeds.clone()
    merged[0, corner] = nodes.features
    keep = torch.ones(embeds.shape[1], dtype=torch.bool)
    keep[slots] = False
    keep[corner] = True
    keep = keep.nonzero()[:, 0]
    assert torch.equal(pruned.kept_positions, keep) and pruned.kept_visual == len(corner) == k
    with torch.inference_mode():
        plain = ov.model(inputs_embeds=merged[:, keep], position_ids=keep[None], use_cache=True, logits_to_keep=1)
    torch.testing.assert_close(pruned.last_logits, plain.logits[:, -1], atol=1e-6, rtol=1e-6)
    ours = decode(ov.model, pruned.last_logits, pruned.cache, GREEDY, set(), next_position=pruned.next_position)
    prompt_length = embeds.shape[1]
    reference = decode(ov.model, plain.logits[:, -1], plain.past_key_values, GREEDY, set(), next_position=prompt_length)
    assert ours.ids == reference.ids


def repeated_frame_features():
    """Random (mutually dissimilar) tokens [4, 64, 32], frame 1 a copy of frame 0: its 64 tokens merge at layer 0."""
    features = torch.randn(4, 64, 32, generator=torch.Generator().manual_seed(0))
    features[1] = features[0]
    return features


def test_framefusion_merges_a_repeated_frame_then_prunes_to_the_budget(ov, ov_eager):
    embeds, span = prompt_inputs(ov, repeated_frame_features(), (8, 8))
    options = {"S_threshold": 0.6, "N_threshold": 0.3}  # 25% merged < 30%: merging stops after layer 0
    pruned = prefill_pruned(ov.model, embeds, span, 0.5, "framefusion", options)
    # the budget at ratio 0.5 is 128 of 256 (the authors' cost model would keep 64 at layer 1: a mean of 0.5)
    assert pruned.visual_lengths == [192, 128]
    frame1 = span.token_positions()[64:128]
    assert not torch.isin(frame1, pruned.kept_positions).any()
    # the 128 kept are layer 0's top attention over the merged sequence (merging equal tokens changes nothing)
    survivors = torch.ones(embeds.shape[1], dtype=torch.bool)
    survivors[frame1] = False
    survivors = survivors.nonzero()[:, 0]
    with torch.inference_mode():
        out = language_model(ov_eager)(
            inputs_embeds=embeds[:, survivors], position_ids=survivors[None], output_attentions=True
        )
    row = out.attentions[0][0, :, -1].mean(0)
    visual = torch.isin(survivors, span.token_positions()).nonzero()[:, 0]
    expected = survivors[visual[row[visual].topk(128).indices]].sort().values
    kept = pruned.kept_positions
    assert torch.equal(kept[torch.isin(kept, span.token_positions())], expected)
    # decoding on the cropped cache equals the manual run: merged sequence at layer 0, the pruned one from layer 1
    out = decode(ov.model, pruned.last_logits, pruned.cache, GREEDY, set(), next_position=pruned.next_position)
    logits = _manual_run(ov, embeds[:, survivors], torch.searchsorted(survivors, kept), 1, out.ids[:-1],
                         positions=survivors, next_position=embeds.shape[1])
    assert logits[len(kept) - 1 :].argmax(-1).tolist() == out.ids
    torch.testing.assert_close(logits[len(kept) - 1], pruned.last_logits[0], atol=1e-5, rtol=1e-5)


def test_framefusion_merging_alone_meets_a_loose_cost(ov):
    embeds, span = prompt_inputs(ov, repeated_frame_features(), (8, 8))
    pruned = prefill_pruned(ov.model, embeds, span, 0.25, "framefusion")
    assert pruned.visual_lengths == [192, 192]  # the 64 duplicates are exactly the allowed 25%: no pruning


@pytest.mark.parametrize("method", IN_LLM_METHODS)
def test_video_layout_keeps_every_newline_and_text_token(video_llm, method):
    enc = encoded(video_llm, frames=3)
    embeds, span = prompt_inputs(video_llm, enc.features, enc.grid)
    assert span.length == 3 * 7 * 8
    assert torch.equal(embeds[0, span.token_positions()], enc.features.flatten(0, 1))  # newlines are elsewhere
    pruned = prefill_pruned(video_llm.model, embeds, span, 0.75, method, SMALL[method])
    structure = embeds.shape[1] - span.tokens
    assert [n - v for n, v in zip(pruned.layer_lengths, pruned.visual_lengths)] == [structure, structure]
    assert pruned.kept_visual == keep_count(0.75, span.tokens)
    out = decode(video_llm.model, pruned.last_logits, pruned.cache, GREEDY, set(), next_position=pruned.next_position)
    assert len(out.ids) == GREEDY.max_new_tokens


def test_layer_options_beyond_the_model_are_value_errors(ov, ov_inputs):
    embeds, span = ov_inputs
    with pytest.raises(ValueError, match="option 'K' of fastv must be below the model's 2 decoder layers, got 2"):
        prefill_pruned(ov.model, embeds, span, 0.9, "fastv")
    with pytest.raises(ValueError, match="option 'layer' of sttm"):
        prefill_pruned(ov.model, embeds, span, 0.9, "sttm", {"layer": 5})
    with pytest.raises(ValueError, match="exceeds"):
        prefill_pruned(ov.model, embeds[:, :20], span, 0.9, "fastv", {"K": 1})


def test_prefill_tflops_follow_the_per_layer_lengths(ov, ov_inputs):
    embeds, span = ov_inputs
    config = ov.config.text_config
    seq = embeds.shape[1]
    assert prefill_flops_per_layer(config, [seq, seq]) == prefill_flops(config, seq)
    pruned = prefill_pruned(ov.model, embeds, span, 0.75, "fastv", {"K": 1})
    short = pruned.layer_lengths[1]
    half = (prefill_flops(config, seq) + prefill_flops(config, short) - 2 * 2 * config.hidden_size * config.vocab_size)
    assert pruned.prefill_tflops == pytest.approx((half / 2 + 2 * config.hidden_size * config.vocab_size) / 1e12)
    with pytest.raises(ValueError, match="one length per layer"):
        prefill_flops_per_layer(config, [seq])


def test_ratio_zero_keeps_everything(ov, ov_inputs):
    embeds, span = ov_inputs
    pruned = prefill_pruned(ov.model, embeds, span, 0.0, "fastv", {"K": 1})
    assert pruned.kept_visual == span.tokens and len(pruned.kept_positions) == embeds.shape[1]
    with torch.inference_mode():
        plain = ov.model(inputs_embeds=embeds, logits_to_keep=1).logits[:, -1]
    assert torch.equal(pruned.last_logits, plain)




@pytest.mark.parametrize("method", IN_LLM_METHODS)
def test_eager_attention_with_its_mask_tensor_gives_the_same_pruned_prefill(ov, ov_eager, ov_inputs, method):
    embeds, span = ov_inputs
    sdpa = prefill_pruned(ov.model, embeds, span, 0.75, method, SMALL[method])
    eager = prefill_pruned(ov_eager.model, embeds, span, 0.75, method, SMALL[method])
    assert torch.equal(sdpa.kept_positions, eager.kept_positions) and sdpa.layer_lengths == eager.layer_lengths
    torch.testing.assert_close(sdpa.last_logits, eager.last_logits, atol=1e-5, rtol=1e-5)
