"""In-LLM methods through the session API (VideoLLM.start / ask / answer / compare) on tiny checkpoints: the same
ids as prefill_pruned + decode by hand, what the result reports, the model unchanged afterwards, context checks."""

import pytest
import torch
from test_model_pipeline import make_clip

from fpcli.model import GenerationConfig, ModelInputError, load_model
from fpcli.model.generate import decode, prefill
from fpcli.model.inllm.prefill import prefill_pruned
from fpcli.model.inllm.registry import in_llm_methods
from fpcli.model.inllm.span import VisualSpan
from fpcli.model.inllm.hooks import decoder_layers
from fpcli.model.llava.inllm_session import InLLMSession
from fpcli.model.methods import is_in_llm, is_two_stage, method_names, options_of, ratio_for, validate_method
from fpcli.prune.registry import keep_count
from fpcli.prune.two_stage import split_budget

IN_LLM_METHODS = tuple(name for name, method in in_llm_methods().items() if method.pre_budget is None)

GEN = GenerationConfig(max_new_tokens=5)
# The tiny LLM has 2 decoder layers: FastV's K and STTM's layer at 1 (the real models' 2 does not exist there).
SMALL = {"fastv": {"K": 1}, "framefusion": {}, "sttm": {"layer": 1}}
QUESTION = "What is the man doing?"


@pytest.fixture(scope="module", params=["onevision", "video"])
def llm(request, tiny_onevision_dir, tiny_video_dir):
    return load_model(tiny_onevision_dir if request.param == "onevision" else tiny_video_dir, device="cpu")


@pytest.fixture(scope="module")
def features(llm):
    return llm.encode_clip(make_clip(4, seed=2))


def test_catalogue_joins_both_registries():
    assert method_names() == ["none", "uniform", "random", "gprune", "divprune", "dycoke", "forestprune",
                              "visionzip", "vidcom2", "fastvid", "holitom", "flashvid", "fastv", "framefusion",
                              "sttm"]
    assert [name for name in method_names() if is_in_llm(name)] == list(IN_LLM_METHODS) == ["fastv", "framefusion",
                                                                                            "sttm"]
    assert [name for name in method_names() if is_two_stage(name)] == ["holitom", "flashvid"]
    assert list(options_of("holitom")) == ["tau", "contextual_share", "beta", "knn", "max_window", "layer",
                                           "llm_keep"]  # the pre-LLM stage's options, then the in-LLM stage's
    assert list(options_of("sttm")) == ["layer", "tau_s", "tau_t", "root_level"]
    assert list(options_of("forestprune")) == ["tau_s", "tau_p", "node_ratio"]
    assert validate_method(0.9, "fastv", K=3) == {"K": 3}
    assert validate_method(0.5, "random") == {"seed": 0}
    with pytest.raises(ValueError, match="^unknown method 'tome'; available: none, .*, fastv, framefusion, sttm$"):
        validate_method(0.9, "tome")
    with pytest.raises(ValueError, match=r"^S_threshold must be a number in \[-1, 1\], got 2$"):
        validate_method(0.9, "framefusion", S_threshold=2)
    assert ratio_for("none", 0.9) == 0.0 and ratio_for("fastv", 0.9) == 0.9 and ratio_for("uniform", 0.5) == 0.5


@pytest.mark.parametrize(("method", "llm_keep"), [("holitom", 0.5), ("flashvid", 0.3)])
def test_two_stage_session_prunes_before_then_inside_the_llm(llm, features, method, llm_keep):
    """K = keep_count(0.75, T*N) from the in-LLM layer on; K / llm_keep enter the LLM (the pre-LLM stage's budget);
    the answer is that of the in-LLM stage run by hand on the pre-LLM stage's visual sequence."""
    total = features.frames * features.grid[0] * features.grid[1]  # 4 frames of 8x8 (onevision) or 7x7 (video)
    k = keep_count(0.75, total)  # 64 or 49
    session = llm.start(features, ratio=0.75, method=method, options={"layer": 1})
    assert isinstance(session, InLLMSession)
    assert session.before.k == round(k / llm_keep) == split_budget(0.75, total, llm_keep).pre
    result = session.ask(QUESTION, GEN)
    assert result.tokens.visual_in_llm == [{"from_layer": 0, "visual": session.before.k},
                                           {"from_layer": 1, "visual": k}]
    assert result.tokens.visual_before == total and result.tokens.visual_after == k == sum(result.per_frame_kept)
    ids, at = session.prompt_ids(QUESTION)
    span = VisualSpan(at, features.frames, features.grid, llm.layout, keep=session.before.keep)
    by_hand = prefill_pruned(llm.model, session.embeds(ids, at), span, 0.75, method,
                             {"layer": 1, "llm_keep": llm_keep})
    out = decode(llm.model, by_hand.last_logits, by_hand.cache, GEN, llm.eos_token_ids(),
                 next_position=by_hand.next_position)
    assert result.generated_ids == out.ids
    again = llm.answer(make_clip(4, seed=2), QUESTION, ratio=0.75, method=method, prune_options={"layer": 1},
                       generation=GEN)
    assert again.generated_ids == result.generated_ids and again.tokens == result.tokens


@pytest.mark.parametrize("method", IN_LLM_METHODS)
def test_session_equals_prefill_pruned_and_decode_by_hand(llm, features, method):
    session = llm.start(features, ratio=0.75, method=method, options=SMALL[method])
    assert isinstance(session, InLLMSession)
    result = session.ask(QUESTION, GEN)
    embeds = session.prompt_embeds(QUESTION)  # [1, L, D], every visual token
    ids, at = session.prompt_ids(QUESTION)
    span = VisualSpan(at, features.frames, features.grid, llm.layout)
    by_hand = prefill_pruned(llm.model, embeds, span, 0.75, method, SMALL[method])
    out = decode(llm.model, by_hand.last_logits, by_hand.cache, GEN, llm.eos_token_ids(),
                 next_position=by_hand.next_position)
    assert result.generated_ids == out.ids
    total = features.frames * features.grid[0] * features.grid[1]
    tokens = result.tokens
    assert tokens.visual_before == total and tokens.prompt == embeds.shape[1] == len(ids) - 1 + total + tokens.newline
    assert tokens.visual_after == by_hand.kept_visual == sum(result.per_frame_kept)
    assert tokens.visual_in_llm[0]["from_layer"] == 0 and tokens.visual_in_llm[-1]["visual"] == by_hand.kept_visual
    assert result.prefill_tflops.after == by_hand.prefill_tflops < result.prefill_tflops.before
    assert result.method == method and result.ratio == 0.75 and len(result.per_frame_kept) == features.frames
    assert result.timing_s.prune > 0 and result.timing_s.prefill > 0
    again = llm.answer(make_clip(4, seed=2), QUESTION, ratio=0.75, method=method, prune_options=SMALL[method],
                       generation=GEN)
    assert again.generated_ids == result.generated_ids and again.tokens == result.tokens


def test_fastv_reports_each_stage(llm, features):
    result = llm.start(features, ratio=0.9, method="fastv", options={"K": 1}).ask(QUESTION, GEN)
    total = features.frames * features.grid[0] * features.grid[1]
    k = keep_count(0.9, total)
    assert result.tokens.visual_in_llm == [{"from_layer": 0, "visual": total}, {"from_layer": 1, "visual": k}]
    assert result.to_dict()["tokens"]["visual_in_llm"] == result.tokens.visual_in_llm
    before = llm.start(features, ratio=0.9, method="uniform").ask(QUESTION, GEN)
    assert before.tokens.visual_in_llm == [{"from_layer": 0, "visual": k}]


def test_questions_of_a_session_each_prefill_the_whole_prompt(llm, features):
    session = llm.start(features, ratio=0.75, method="sttm", options={"layer": 1}, history=True)
    first = session.ask(QUESTION, GEN)
    second = session.ask("And then?", GEN)
    assert session.prefills == session.questions == 2 and session.turns[0] == (QUESTION, first.answer)
    assert second.tokens.text > first.tokens.text  # the first turn is in the second prompt


def test_in_llm_runs_leave_the_model_unchanged(llm, features):
    """A later `none` run through the session path gives the unpruned logits and answer bit for bit."""
    plain = llm.start(features, ratio=0.0, method="none")
    embeds = plain.prompt_embeds(QUESTION)
    logits_before, _ = prefill(llm.model, embeds)
    ids_before = plain.ask(QUESTION, GEN).generated_ids
    for method in IN_LLM_METHODS:
        llm.start(features, ratio=0.9, method=method, options=SMALL[method]).ask(QUESTION, GEN)
    assert all(not layer._forward_pre_hooks for layer in decoder_layers(llm.model))
    fresh = llm.start(features, ratio=0.0, method="none")
    logits_after, _ = prefill(llm.model, fresh.prompt_embeds(QUESTION))
    assert torch.equal(logits_before, logits_after)
    assert fresh.ask(QUESTION, GEN).generated_ids == ids_before


def test_check_fits_counts_every_visual_token_and_the_model_s_layers(llm, monkeypatch):
    frames = 4
    monkeypatch.setattr(llm, "encode", lambda *a, **k: pytest.fail("encoded although the check fails"))
    with pytest.raises(ModelInputError, match="^option 'K' of fastv must be below the model's 2 decoder layers, "
                                              "got 2$"):
        llm.answer(make_clip(frames), QUESTION, ratio=0.9, method="fastv", generation=GEN)  # default K = 2
    with pytest.raises(ModelInputError, match="^option 'layer' of sttm must be below"):
        llm.check_fits(frames, QUESTION, 0.9, "sttm", options={"layer": 5})
    ids, _ = llm.prompt_ids([QUESTION], [], 0.0, [0.0] * frames)
    per_frame = 64 if llm.layout == "onevision" else 49
    newlines = 1 if llm.layout == "onevision" else frames * 7
    needed = len(ids) - 1 + frames * per_frame + newlines
    monkeypatch.setattr(llm.config.text_config, "max_position_embeddings", needed - 1)
    llm.check_fits(frames, QUESTION, 0.9, "uniform")  # keeps 10%: fits
    with pytest.raises(ModelInputError, match=rf"needs {needed} tokens .* {frames * per_frame} visual"):
        llm.check_fits(frames, QUESTION, 0.9, "fastv", options={"K": 1})


def test_compare_answers_each_method_on_one_encoding(llm, monkeypatch):
    clip = make_clip(4, seed=3)
    methods = {"none": {}, "uniform": {}, "fastv": {"K": 1}, "framefusion": {}}
    encodings = []
    encode = llm.encode_clip
    monkeypatch.setattr(llm, "encode_clip", lambda *a, **k: encodings.append(1) or encode(*a, **k))
    comparison = llm.compare(clip, QUESTION, methods, ratio=0.9, generation=GEN, decode_s=0.25)
    assert len(encodings) == 1
    assert [r.method for r in comparison.results] == list(methods)
    assert [r.ratio for r in comparison.results] == [0.0, 0.9, 0.9, 0.9]
    features = encode(clip)
    for result, (name, options) in zip(comparison.results, methods.items()):
        alone = llm.start(features, ratio=ratio_for(name, 0.9), method=name, options=options).ask(QUESTION, GEN)
        assert result.generated_ids == alone.generated_ids and result.tokens == alone.tokens
        assert result.timing_s.decode == 0.25 and result.timing_s.encode == comparison.results[0].timing_s.encode
    data = comparison.to_dict()
    assert data["video"] == "clip3.mp4" and [m["method"] for m in data["methods"]] == list(methods)
    with pytest.raises(ModelInputError, match="^option 'K' of fastv"):
        llm.compare(clip, QUESTION, {"uniform": {}, "fastv": {}}, ratio=0.9, generation=GEN)
    assert len(encodings) == 1  # checked before encoding
