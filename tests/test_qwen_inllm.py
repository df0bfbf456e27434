"""In-LLM methods (fastv, framefusion, sttm) on tiny Qwen2.5-VL and Qwen3-VL checkpoints with 4 decoder layers (so
the methods' default layers, FastV's K=2 and STTM's layer 2, fit): transformers equivalence at ratio 0, the attention
row with M-RoPE against eager attention, a pruned generation against a layer-by-layer run of the pruned sequence at
its 3-D positions with the kept DeepStack rows, budgets, sessions, checks and `ask --method fastv` end to end."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from fixtures_video import encode
from typer.testing import CliRunner

from fpcli.cli import app
from fpcli.model import GenerationConfig, load_model
from fpcli.model.errors import ModelInputError
from fpcli.model.generate import decode
from fpcli.model.inllm.attention import last_token_attention
from fpcli.model.inllm.methods.framefusion import FrameFusion
from fpcli.model.inllm.methods.sttm import STTM, sttm_nodes
from fpcli.model.inllm.registry import in_llm_methods
from fpcli.model.qwen.inllm import VideoColumns, qwen_prefill_pruned
from fpcli.model.qwen.positions import assemble, full_positions
from fpcli.model.qwen.prompt import token_types
from fpcli.model.qwen.video_input import patchify, seconds_per_group

IN_LLM_METHODS = tuple(name for name, method in in_llm_methods().items() if method.pre_budget is None)

ARCHS = ["qwen2_5_vl", "qwen3_vl"]
QUESTION = "What is the man doing?"
GREEDY = GenerationConfig(max_new_tokens=6)
LAYERS = 4


def make_clip(frames: int, seed: int = 0, height: int = 24, width: int = 40):
    rng = np.random.default_rng(seed)
    return SimpleNamespace(
        path=f"clip{seed}.mp4",
        frames=rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8),
        timestamps=np.arange(frames, dtype=np.float64) / 2,  # 2 fps
        duration=frames / 2,
        indices=np.arange(frames),
    )


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from fpcli.devtools.tiny_qwen import build_tiny_qwen

    return {arch: build_tiny_qwen(tmp_path_factory.mktemp(arch), arch, text_layers=LAYERS) for arch in ARCHS}


@pytest.fixture(scope="module", params=ARCHS)
def llm(request, checkpoints):
    return load_model(checkpoints[request.param], device="cpu")


@pytest.fixture(scope="module")
def models(checkpoints) -> dict:
    """One model per architecture, for the property test (hypothesis draws the architecture)."""
    return {arch: load_model(checkpoints[arch], device="cpu") for arch in ARCHS}


@pytest.fixture(scope="module")
def eager(llm, checkpoints):
    return load_model(checkpoints[llm.arch.model_type], device="cpu", attn="eager")


def prepared(llm, clip):
    """(features, prompt, positions [3, L], seconds per group, the unpruned assembled input)."""
    features = llm.encode_clip(clip)
    geo = llm.geometry_of(features)
    prompt = llm.prompt(features, QUESTION, geo)
    seconds = None if llm.arch.timestamps_in_text else seconds_per_group(geo.frames, clip.duration, 2)
    positions = full_positions(llm.model, prompt, geo.grid_thw(), seconds)
    every = torch.arange(geo.tokens)
    batch = assemble(llm.model.get_input_embeddings(), prompt, positions, features.features, every,
                     features.extras.get("deepstack"))  # fmt: skip
    return features, prompt, positions, seconds, batch


@pytest.fixture(scope="module")
def inputs(llm):
    clip = make_clip(4)
    return (clip, *prepared(llm, clip))


def flat_visual(prompt) -> torch.Tensor:
    """[L] each position's flat visual index, -1 for text, written independently of VideoColumns."""
    return torch.where(prompt.video_mask, prompt.video_mask.cumsum(0) - 1, -1)


def no_hooks(llm) -> bool:
    layers = llm.model.model.language_model.layers
    return all(not layer._forward_pre_hooks and not layer._forward_hooks for layer in layers)


@pytest.mark.parametrize("method", IN_LLM_METHODS)
def test_ratio_zero_with_hooks_equals_transformers_forward(llm, inputs, method):
    clip, features, prompt, positions, seconds, batch = inputs
    geo = llm.geometry_of(features)
    reference = dict(input_ids=prompt.input_ids[None], pixel_values_videos=patchify(clip.frames, llm.spec, geo),
                     video_grid_thw=geo.grid_thw(), mm_token_type_ids=token_types(prompt))  # fmt: skip
    if seconds is not None:
        reference["second_per_grid_ts"] = torch.tensor([seconds])
    deepstack = {}
    if batch.deepstack is not None:
        deepstack = {"visual_pos_masks": batch.visual_pos_masks, "deepstack_visual_embeds": batch.deepstack}
    with torch.inference_mode():
        theirs = llm.model(**reference).logits[:, -1]
        unhooked = llm.lm(inputs_embeds=batch.inputs_embeds, position_ids=batch.position_ids, **deepstack).logits[:, -1]
    pruned = qwen_prefill_pruned(llm, features, prompt, positions, 0.0, method)
    assert pruned.visual_lengths == [120] * LAYERS and pruned.layer_lengths == [len(prompt.input_ids)] * LAYERS
    torch.testing.assert_close(pruned.last_logits, theirs, atol=1e-5, rtol=1e-5)
    assert torch.equal(pruned.last_logits, unhooked)  # DeepStack added by our hooks exactly as transformers adds it
    assert pruned.next_position == int(positions.max()) + 1 < len(prompt.input_ids)  # the rope delta, not L
    assert no_hooks(llm)


def test_hand_computed_attention_row_with_mrope_equals_eager_attention(eager):
    clip = make_clip(4)
    _, prompt, _, _, batch = prepared(eager, clip)
    text_model = eager.model.model.language_model
    seen = []  # what each decoder layer receives: its input (DeepStack added) and its rotary embeddings

    def record(module, args, kwargs):
        seen.append((args[0] if args else kwargs["hidden_states"], kwargs["position_embeddings"]))

    handles = [layer.register_forward_pre_hook(record, with_kwargs=True) for layer in text_model.layers]
    deepstack = {}
    if batch.deepstack is not None:
        deepstack = {"visual_pos_masks": batch.visual_pos_masks, "deepstack_visual_embeds": batch.deepstack}
    try:
        with torch.inference_mode():
            out = text_model(inputs_embeds=batch.inputs_embeds, position_ids=batch.position_ids,
                             output_attentions=True, **deepstack)  # fmt: skip
            one_d = text_model.rotary_emb(batch.inputs_embeds, batch.position_ids[:1].expand(3, -1, -1))
    finally:
        for handle in handles:
            handle.remove()
    t, h, w = batch.position_ids[:, 0, prompt.video_mask]
    assert not torch.equal(t, h) and not torch.equal(h, w)  # the video tokens' three rows differ: M-RoPE matters
    assert len(seen) == len(out.attentions) == LAYERS
    with torch.inference_mode():
        for layer, (hidden, (cos, sin)), weights in zip(text_model.layers, seen, out.attentions):
            expected = weights[0, :, -1].mean(0).float()  # [L]: the last query, mean over heads
            ours = last_token_attention(layer, hidden, cos, sin)
            torch.testing.assert_close(ours, expected, atol=1e-7, rtol=0)
            assert ours.sum().item() == pytest.approx(1.0, abs=1e-5)
            flat = last_token_attention(layer, hidden, *one_d)  # 1-D RoPE at the temporal row: 30x further off
            assert (flat - expected).abs().max() > 1e-6


def fastv_reference(k_layer: int, keep: int):
    """FastV as the paper states it: the last token's attention at layer K-1 (mean over heads) ranks the visual
    tokens; from layer K on only the `keep` best of them go on, with all text."""
    state = {}

    def reduce(index, layer, hidden, visual, cos, sin):
        if index == k_layer - 1:
            state["row"] = last_token_attention(layer, hidden, cos, sin)
        if index != k_layer:
            return None
        candidates = (visual >= 0).nonzero()[:, 0]
        best = candidates[state["row"][candidates].topk(keep).indices]
        mask = visual < 0
        mask[best] = True
        return mask.nonzero()[:, 0], None

    return reduce


def sttm_reference(layer_index: int, keep: int, grid: tuple[int, int]):
    """STTM at `layer_index`: the video's hidden states [T', h, w, D] merged by sttm_nodes, each token at its node's
    top-left slot (as the authors put a merged token at its first position)."""

    def reduce(index, layer, hidden, visual, cos, sin):
        if index != layer_index:
            return None
        slots = (visual >= 0).nonzero()[:, 0]
        h, w = grid
        nodes = sttm_nodes(hidden[0, slots].view(-1, h, w, hidden.shape[-1]), keep, tau_s=0.85, tau_t=0.6,
                           root_level=1)  # fmt: skip
        corner = slots[nodes.tlbr[:, 0] * h * w + nodes.tlbr[:, 1] * w + nodes.tlbr[:, 2]]
        merged = hidden.clone()
        merged[0, corner] = nodes.features
        mask = visual < 0
        mask[corner] = True
        return mask.nonzero()[:, 0], merged

    return reduce


def manual_run(llm, batch, visual, reduce, fed_ids=(), next_position=0, final=None):
    """Logits [S', V] of a plain layer-by-layer run of the prompt (batch: embeds, 3-D positions, DeepStack rows),
    `reduce` acting on the prompt part at each layer's input; fed tokens (decoding, at next_position + i on all
    three rows) see only the prompt indices `final` at every layer, as the cropped KV cache gives them.
    Returns (logits, surviving prompt indices)."""
    lm = llm.model.model.language_model
    prompt = batch.inputs_embeds.shape[1]
    alive = torch.arange(prompt)
    with torch.inference_mode():
        fed = lm.embed_tokens(torch.tensor(list(fed_ids), dtype=torch.long))[None]
        hidden = torch.cat([batch.inputs_embeds, fed], dim=1)  # [1, S, D]
        later = (next_position + torch.arange(len(fed_ids)))[None].expand(3, -1)
        positions = torch.cat([batch.position_ids[:, 0], later], dim=1)  # [3, S]
        for index, layer in enumerate(lm.layers):
            n = len(alive)
            cos, sin = lm.rotary_emb(hidden, positions[:, None])
            reduced = reduce(index, layer, hidden[:, :n], visual[alive], cos[..., :n, :], sin[..., :n, :])
            if reduced is not None:
                keep, new = reduced
                hidden = torch.cat([(hidden[:, :n] if new is None else new)[:, keep], hidden[:, n:]], dim=1)
                positions = torch.cat([positions[:, keep], positions[:, n:]], dim=1)
                alive = alive[keep]
                cos, sin = lm.rotary_emb(hidden, positions[:, None])
            size = hidden.shape[1]
            mask = torch.ones(size, size, dtype=torch.bool).tril()
            if final is not None:
                mask[len(alive) :, : len(alive)] &= torch.isin(alive, final)
            hidden = layer(hidden, attention_mask=mask[None, None], position_embeddings=(cos, sin))
            if batch.deepstack is not None and index < len(batch.deepstack):  # Qwen3-VL: kept visual rows only
                rows = (visual[alive] >= 0).nonzero()[:, 0]
                hidden = hidden.clone()
                hidden[0, rows] = hidden[0, rows] + batch.deepstack[index][visual[alive][rows]]
        return llm.model.lm_head(lm.norm(hidden))[0], alive


# (method, options, its reference reducer): FastV at K=1 prunes between Qwen3-VL's two DeepStack layers (0 and 1),
# at the default K=2 after them; STTM at layer 1 merges between them. 30 = max(1, round(0.25 * 120)).
CASES = {
    "fastv-K1": ("fastv", {"K": 1}, lambda grid: fastv_reference(1, 30)),
    "fastv-K2": ("fastv", {}, lambda grid: fastv_reference(2, 30)),
    "sttm-layer1": ("sttm", {"layer": 1}, lambda grid: sttm_reference(1, 30, grid)),
}


@pytest.mark.parametrize("case", CASES)
def test_generation_after_pruning_equals_a_manual_run_of_the_pruned_sequence(llm, inputs, case):
    method, options, reference = CASES[case]
    _, features, prompt, positions, _, batch = inputs
    pruned = qwen_prefill_pruned(llm, features, prompt, positions, 0.75, method, options)
    out = decode(llm.lm, pruned.last_logits, pruned.cache, GREEDY, set(), next_position=pruned.next_position)
    visual = flat_visual(prompt)
    logits, kept = manual_run(llm, batch, visual, reference(features.grid))
    assert torch.equal(kept, pruned.kept_positions)
    torch.testing.assert_close(logits[-1], pruned.last_logits[0], atol=1e-5, rtol=1e-5)
    logits, _ = manual_run(llm, batch, visual, reference(features.grid), out.ids[:-1], pruned.next_position, kept)
    assert logits[len(kept) - 1 :].argmax(-1).tolist() == out.ids
    assert [layer.keys.shape[2] for layer in pruned.cache.layers] == [len(kept) + len(out.ids) - 1] * LAYERS


def test_framefusion_generation_equals_a_manual_run_fed_its_merges(llm, monkeypatch):
    """FrameFusion's decisions (merges at layer 0, pruning at layer 1, here group 1 a copy of group 0 so that its
    tokens merge) replayed on the layer-by-layer run: the merged survivors keep their 3-D positions and their own
    DeepStack rows, and decoding equals it."""
    clip = make_clip(6)
    clip.frames[2:4] = clip.frames[0:2]  # temporal group 1 repeats group 0
    features, prompt, positions, _, batch = prepared(llm, clip)
    decisions = {}
    reduce = FrameFusion.reduce

    def recorded(self, step):
        decisions[step.index] = reduce(self, step)
        return decisions[step.index]

    monkeypatch.setattr(FrameFusion, "reduce", recorded)
    pruned = qwen_prefill_pruned(llm, features, prompt, positions, 0.5, "framefusion",
                                 {"S_threshold": 0.999, "N_threshold": 0.5})  # fmt: skip
    # layer 0 runs on 120 of 180 (group 1 merged into group 0; 1/3 < 0.5 so merging stops), layers 1-3 on the
    # budget, 90 of 180
    assert pruned.visual_lengths == [120, 90, 90, 90]
    out = decode(llm.lm, pruned.last_logits, pruned.cache, GREEDY, set(), next_position=pruned.next_position)

    def replay(index, layer, hidden, visual, cos, sin):
        return decisions.get(index)

    visual = flat_visual(prompt)
    logits, kept = manual_run(llm, batch, visual, replay)
    assert torch.equal(kept, pruned.kept_positions)
    torch.testing.assert_close(logits[-1], pruned.last_logits[0], atol=1e-5, rtol=1e-5)
    logits, _ = manual_run(llm, batch, visual, replay, out.ids[:-1], pruned.next_position, kept)
    assert logits[len(kept) - 1 :].argmax(-1).tolist() == out.ids


@settings(max_examples=12)
@given(percent=st.integers(0, 99), frames=st.integers(1, 7), width=st.sampled_from([16, 24, 40]),
       arch=st.sampled_from(ARCHS))  # fmt: skip
def test_fastv_ends_at_exactly_the_budget_from_its_layer_on(models, percent, frames, width, arch):
    llm = models[arch]
    features, prompt, positions, _, _ = prepared(llm, make_clip(frames, width=width))
    total = features.features.shape[0] * features.features.shape[1]
    ratio = percent / 100
    budget = max(1, ((100 - percent) * total + 50) // 100)  # max(1, round((1 - r) * N)), halves up
    fastv = qwen_prefill_pruned(llm, features, prompt, positions, ratio, "fastv")
    assert fastv.visual_lengths == [total, total, budget, budget]
    assert len(fastv.kept_positions) == len(prompt.input_ids) - total + budget


def test_sttm_ends_at_exactly_the_budget(llm, inputs):
    """STTM's shifted thresholds, then a split or join by similarity, end at the budget (30 of 120 here)."""
    _, features, prompt, positions, _, _ = inputs
    pruned = qwen_prefill_pruned(llm, features, prompt, positions, 0.75, "sttm")
    assert pruned.visual_lengths[:2] == [120, 120] and pruned.visual_lengths[2:] == [30, 30]


def test_framefusion_prunes_to_the_budget_not_its_cost_model(llm, inputs):
    """FrameFusion's pruning keeps the budget, 60 of 120 at ratio 0.5 (its cost model, a mean visual fraction of
    1 - ratio over the 4 layers with nothing merged at layer 0, would keep 1 / 3 of them at layers 1-3)."""
    _, features, prompt, positions, _, _ = inputs
    pruned = qwen_prefill_pruned(llm, features, prompt, positions, 0.5, "framefusion", {"S_threshold": 1.0})
    assert pruned.visual_lengths == [120, 60, 60, 60]
    assert no_hooks(llm)


@pytest.mark.parametrize("method", IN_LLM_METHODS)
def test_eager_attention_with_its_mask_tensor_gives_the_same_pruned_prefill(llm, eager, inputs, method):
    _, features, prompt, positions, _, _ = inputs
    sdpa = qwen_prefill_pruned(llm, features, prompt, positions, 0.75, method, {"K": 1} if method == "fastv" else {})
    mask = qwen_prefill_pruned(eager, features, prompt, positions, 0.75, method, {"K": 1} if method == "fastv" else {})
    assert torch.equal(sdpa.kept_positions, mask.kept_positions) and sdpa.layer_lengths == mask.layer_lengths
    torch.testing.assert_close(sdpa.last_logits, mask.last_logits, atol=1e-5, rtol=1e-5)


def test_hooks_are_removed_when_a_method_fails(llm, inputs, monkeypatch):
    _, features, prompt, positions, _, _ = inputs

    def fail(self, step):
        raise RuntimeError("boom")

    monkeypatch.setattr(STTM, "reduce", fail)
    with pytest.raises(RuntimeError, match="boom"):
        qwen_prefill_pruned(llm, features, prompt, positions, 0.75, "sttm")
    assert no_hooks(llm)


def test_video_columns_index_the_video_tokens_in_group_row_col_order(llm, inputs):
    _, features, prompt, *_ = inputs
    span = VideoColumns(prompt.video_mask, 2, features.grid)
    assert torch.equal(span.visual_index(len(prompt.input_ids)), flat_visual(prompt))
    with pytest.raises(ValueError, match="not 60 in"):
        VideoColumns(prompt.video_mask, 1, features.grid).visual_index(len(prompt.input_ids))


@pytest.mark.parametrize("method", IN_LLM_METHODS)
def test_session_answers_each_question_as_a_fresh_answer(llm, method):
    clip = make_clip(6)
    session = llm.start(llm.encode_clip(clip), ratio=0.8, method=method)
    for question in (QUESTION, "Describe the scene."):
        asked = session.ask(question, GREEDY)
        fresh = llm.answer(clip, question, ratio=0.8, method=method, generation=GREEDY)
        assert asked.generated_ids == fresh.generated_ids and asked.to_dict()["tokens"] == fresh.to_dict()["tokens"]
    assert (session.prefills, session.questions) == (2, 2)  # one whole pruned prefill per question
    record = fresh.to_dict()
    tokens = record["tokens"]
    assert tokens["visual_before"] == 180 and tokens["prompt"] == tokens["text"] + 180
    assert tokens["visual_in_llm"][0]["from_layer"] == 0  # 180 enter; FrameFusion merges some before layer 0 runs
    assert tokens["visual_after"] == tokens["visual_in_llm"][-1]["visual"] == sum(record["per_frame_kept"])
    assert record["temporal_groups"] == len(record["per_frame_kept"]) == 3 and record["method"] == method
    if method == "fastv":
        assert tokens["visual_in_llm"] == [{"from_layer": 0, "visual": 180}, {"from_layer": 2, "visual": 36}]
    assert record["prefill_tflops"]["after"] < record["prefill_tflops"]["before"]


def test_options_and_context_are_checked_before_encoding(llm, monkeypatch):
    clip = make_clip(4)

    def never(*args, **kwargs):
        raise AssertionError("encoded")

    monkeypatch.setattr(llm, "encode_clip", never)
    with pytest.raises(ModelInputError, match="option 'K' of fastv must be below the model's 4 decoder layers, got 4"):
        llm.answer(clip, QUESTION, method="fastv", prune_options={"K": 4})
    with pytest.raises(ModelInputError, match="option 'layer' of sttm"):
        llm.check_fits(4, QUESTION, 0.9, "sttm", clip=clip, options={"layer": 9})
    with pytest.raises(ValueError, match="unknown option 'k' for method 'fastv'"):
        llm.check_fits(4, QUESTION, 0.9, "fastv", clip=clip, options={"k": 1})
    prompt = llm.prompt(clip, QUESTION, llm.geometry(clip))
    monkeypatch.setattr(type(llm), "context_length", property(lambda self: len(prompt.input_ids) + 10))
    llm.check_fits(4, QUESTION, 0.9, "fastv", clip=clip, max_new_tokens=10)  # every video token enters: it fits
    with pytest.raises(ModelInputError, match=r"prompt \(\d+ tokens after pruning: none before the LLM"):
        llm.check_fits(4, QUESTION, 0.9, "fastv", clip=clip, max_new_tokens=11)  # one token more does not
    pruned_away = int(prompt.video_mask.sum()) - 12  # forestprune keeps 12 video tokens before the LLM
    llm.check_fits(4, QUESTION, 0.9, "forestprune", clip=clip, max_new_tokens=10 + pruned_away)
    with pytest.raises(ModelInputError, match=r"pruning: none before the LLM, fastv prunes inside it\) plus 128 new"):
        llm.answer(clip, QUESTION, method="fastv")


def test_ask_with_fastv_end_to_end(checkpoints, tmp_path):
    clip = encode(tmp_path / "clip.mp4", "libx264", 64, 48, 30)
    # 4 frames are 2 groups of 6x9 merged tokens (Qwen2.5-VL) or 12x16 (Qwen3-VL's budget covers the whole clip);
    # at the default ratio 0.9 FastV keeps round(10.8) = 11 and round(38.4) = 38 from its default layer 2 on
    expected = {"qwen2_5_vl": (108, 11), "qwen3_vl": (384, 38)}
    for arch in ARCHS:
        result = CliRunner().invoke(app, ["ask", str(clip), QUESTION, "--model", str(checkpoints[arch]), "--method",
                                          "fastv", "--frames", "4", "--max-new-tokens", "3", "--json"])  # fmt: skip
        assert result.exit_code == 0, result.stderr
        record = json.loads(result.stdout)
        assert record["method"] == "fastv" and record["tokens"]["generated"] == 3
        total, kept = expected[arch]
        assert record["tokens"]["visual_in_llm"] == [{"from_layer": 0, "visual": total},
                                                     {"from_layer": 2, "visual": kept}]
        assert record["tokens"]["prompt"] == record["tokens"]["text"] + total and record["temporal_groups"] == 2
