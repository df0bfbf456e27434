"""fpcli.model sessions on tiny checkpoints: ClipFeatures round trips, prefix-cached questions equal fresh answers,
history, context checks, the prefill/decode split."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_model_pipeline import make_clip

from fpcli.errors import InputError
from fpcli.model import ClipFeatures, GenerationConfig, ModelError, ModelInputError, load_model
from fpcli.model.generate import decode, prefill
from fpcli.model.llava.sequence import time_instruction

GEN = GenerationConfig(max_new_tokens=6)
QUESTIONS = ["What is the man doing?", "How many dogs are there?", "Describe the colours."]


@pytest.fixture(scope="module", params=["onevision", "video"])
def llm(request, tiny_onevision_dir, tiny_video_dir):
    return load_model(tiny_onevision_dir if request.param == "onevision" else tiny_video_dir, device="cpu")


def test_clip_features_round_trip_through_safetensors_and_json(tmp_path):
    features = ClipFeatures(
        video="/v/clip.mp4", features=torch.randn(2, 6, 4, dtype=torch.bfloat16), grid=(2, 3),
        timestamps=[0.0, 0.4], duration=0.8, frame_indices=[0, 12],
        extras={"vision_attention": torch.rand(2, 6)}, decode_s=0.5, encode_s=1.25, cache_load_s=0.0,
        cache="miss", warnings=["only 0.8 s of 3.0 s readable"],
    )  # fmt: skip
    assert sorted(features.tensors()) == ["extras.vision_attention", "features"]
    save_file(features.tensors(), tmp_path / "f.safetensors")
    (tmp_path / "f.json").write_text(json.dumps(features.meta()))
    back = ClipFeatures.from_parts(load_file(tmp_path / "f.safetensors"), json.loads((tmp_path / "f.json").read_text()))
    assert torch.equal(back.features, features.features) and back.features.dtype == torch.bfloat16
    assert torch.equal(back.extras["vision_attention"], features.extras["vision_attention"])
    assert back.meta() == features.meta() and back.grid == (2, 3) and back.frames == 2
    with pytest.raises(KeyError):
        ClipFeatures.from_parts({}, features.meta())


def test_encode_clip(llm):
    clip = make_clip(3, seed=1)
    features = llm.encode_clip(clip, decode_s=0.5)
    encoded = llm.encode(clip.frames)
    torch.testing.assert_close(features.features, encoded.features, atol=0, rtol=0)
    assert features.meta() == {
        "video": "clip1.mp4", "grid": list(features.grid), "timestamps": [0.0, 0.25, 0.5], "duration": 0.75,
        "frame_indices": [0, 2, 4], "decode_s": 0.5, "encode_s": features.encode_s, "cache_load_s": 0.0,
        "cache": "off", "warnings": [],
    }  # fmt: skip
    assert features.encode_s > 0 and sorted(features.extras) == ["vision_attention", "vision_keys"]
    for name, value in encoded.extras.items():  # the encoding's extras, for methods that take them
        torch.testing.assert_close(features.extras[name], value, atol=0, rtol=0)


@pytest.mark.parametrize(("method", "ratio", "options"), [
    ("none", 0.0, {}), ("uniform", 0.0, {}), ("forestprune", 0.9, {}), ("random", 0.5, {"seed": 3}),
    ("visionzip", 0.75, {"dominant_share": 0.5}), ("vidcom2", 0.9, {}), ("fastvid", 0.9, {"min_segments": 2}),
])  # fmt: skip
def test_session_answers_equal_fresh_answers(llm, method, ratio, options):
    clip = make_clip(4, seed=2)
    session = llm.start(llm.encode_clip(clip), ratio=ratio, method=method, options=options)
    asked = [session.ask(q, GEN) for q in QUESTIONS]
    fresh = [llm.answer(clip, q, ratio=ratio, method=method, prune_options=options, generation=GEN) for q in QUESTIONS]
    assert [r.generated_ids for r in asked] == [r.generated_ids for r in fresh]
    for a, f in zip(asked, fresh):
        assert (a.answer, a.tokens, a.per_frame_kept, a.method, a.ratio) == (f.answer, f.tokens, f.per_frame_kept,
                                                                             f.method, f.ratio)  # fmt: skip
    assert (session.prefills, session.questions) == (1, 3)
    assert asked[0].timing_s.prune > 0 and [r.timing_s.prune for r in asked[1:]] == [0.0, 0.0]
    assert all(r.timing_s.prefill > 0 for r in asked)  # the prefix on the first, each question's own text on all
    assert [r.timing_s.encode for r in asked] == [session.features.encode_s, 0.0, 0.0]  # the clip's cost once
    assert session.features.encode_s > 0 and {r.cache for r in asked} == {"off"}
    assert [r.timing_s.load for r in asked] == [0.0] * 3


def test_prompt_parts_tokenize_as_the_whole_prompt(llm):
    """The video token is special: the text before and after it tokenize on their own to the whole prompt's ids,
    which is what lets a session keep the prefix and tokenize only the rest per question."""
    clip = make_clip(3, seed=3)
    token, token_id = llm.video_token()
    tok = llm.tokenizer
    for question in QUESTIONS:
        ids, at = llm.prompt_ids([question], [], clip.duration, clip.timestamps)
        prompt = tok.decode(ids)
        before, after = prompt.split(token)
        encode = lambda text: tok(text, add_special_tokens=False).input_ids  # noqa: E731
        parts = [*encode(before), token_id, *encode(after)]
        assert parts == ids.tolist() == encode(prompt) and ids[at] == token_id


def test_time_instruction_and_system_prompt(tiny_video_dir):
    llm = load_model(tiny_video_dir, device="cpu")
    clip = make_clip(3, seed=4)
    session = llm.start(llm.encode_clip(clip), ratio=0.5, method="uniform")
    tok = llm.tokenizer

    def rendered(content, system=None):
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
        return tok(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
                   add_special_tokens=False).input_ids  # fmt: skip

    timed = f"<video>\n{time_instruction(clip.duration, clip.timestamps)}\nWhy?"
    assert session.prompt_ids("Why?")[0].tolist() == rendered(timed)  # the video layout's default
    assert session.prompt_ids("Why?", time_instruction=False)[0].tolist() == rendered("<video>\nWhy?")
    assert session.prompt_ids("Why?", system_prompt="Be brief.")[0].tolist() == rendered(timed, "Be brief.")
    first = session.ask("Why?", GEN)
    other = session.ask("Why?", GEN, system_prompt="Be brief.")  # another prefix: prefilled anew
    again = session.ask("Why?", GEN, system_prompt="Be brief.")
    assert session.prefills == 2 and other.generated_ids == again.generated_ids
    assert first.tokens.text + 1 == len(rendered(timed))
    fresh = llm.answer(clip, "Why?", ratio=0.5, method="uniform", generation=GEN, system_prompt="Be brief.",
                       time_instruction=False)  # fmt: skip
    assert fresh.generated_ids == session.ask("Why?", GEN, system_prompt="Be brief.",
                                              time_instruction=False).generated_ids  # fmt: skip


def test_history_feeds_earlier_turns(llm):
    clip = make_clip(3, seed=5)
    session = llm.start(llm.encode_clip(clip), ratio=0.7, method="uniform", history=True)
    first = session.ask(QUESTIONS[0], GEN)
    second = session.ask(QUESTIONS[1], GEN)
    assert session.turns == [(QUESTIONS[0], first.answer), (QUESTIONS[1], second.answer)]
    timed = time_instruction(clip.duration, clip.timestamps) + "\n" if llm.layout == "video" else ""
    video_turn = "<video>\n" + timed
    messages = [
        {"role": "user", "content": video_turn + QUESTIONS[0]}, {"role": "assistant", "content": first.answer},
        {"role": "user", "content": QUESTIONS[1]}, {"role": "assistant", "content": second.answer},
        {"role": "user", "content": QUESTIONS[2]},
    ]  # fmt: skip
    tok = llm.tokenizer
    expected = tok(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
                   add_special_tokens=False).input_ids  # fmt: skip
    assert session.prompt_ids(QUESTIONS[2])[0].tolist() == expected
    # The cached path (prefix, then the turns after the video) decodes what one whole-prompt pass does.
    logits, cache = prefill(llm.model, session.prompt_embeds(QUESTIONS[2]))
    whole = decode(llm.model, logits, cache, GEN, llm.eos_token_ids())
    third = session.ask(QUESTIONS[2], GEN)
    assert third.generated_ids == whole.ids and third.tokens.text == len(expected) - 1
    alone = llm.start(session.features, ratio=0.7, method="uniform").ask(QUESTIONS[2], GEN)
    assert alone.tokens.text < third.tokens.text  # without history the earlier turns are not in the prompt
    assert (session.prefills, session.questions) == (1, 3)


def test_interrupted_answer_keeps_the_session(llm, monkeypatch):
    """Ctrl-C while decoding (after the question's text went into the cache) leaves the cached prefix intact."""
    import fpcli.model.llava.session as session_module

    clip = make_clip(3, seed=6)
    session = llm.start(llm.encode_clip(clip), ratio=0.5, method="uniform")
    expected = session.ask(QUESTIONS[0], GEN).generated_ids

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(session_module, "decode", interrupted)
        with pytest.raises(KeyboardInterrupt):
            session.ask(QUESTIONS[1], GEN)
    assert session.ask(QUESTIONS[0], GEN).generated_ids == expected
    assert (session.prefills, session.questions) == (1, 2)


def test_decode_next_position_default_is_after_the_cache(llm):
    session = llm.start(llm.encode_clip(make_clip(2, seed=7)), ratio=0.5, method="uniform")
    embeds = session.prompt_embeds(QUESTIONS[0])
    runs = []
    for position in (None, embeds.shape[1]):
        logits, cache = prefill(llm.model, embeds)
        runs.append(decode(llm.model, logits, cache, GEN, set(), next_position=position).ids)
    assert runs[0] == runs[1] and len(runs[0]) == GEN.max_new_tokens


def test_check_fits(llm, monkeypatch):
    frames, ratio = 4, 0.9
    tok = llm.tokenizer
    content = "<video>\n" + (time_instruction(0.0, [0.0] * frames) + "\n" if llm.layout == "video" else "") + "Why?"
    text = len(tok(tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                           add_generation_prompt=True), add_special_tokens=False).input_ids) - 1
    # onevision: 8x8 tokens a frame, K = round(0.1 * 256) = 26, one newline; video: 7x7, round(19.6) = 20, 4*7
    visual, newlines = (26, 1) if llm.layout == "onevision" else (20, 28)
    needed = text + visual + newlines
    monkeypatch.setattr(llm.config.text_config, "max_position_embeddings", needed)
    llm.check_fits(frames, "Why?", ratio, "uniform")  # exactly the context: fits
    monkeypatch.setattr(llm.config.text_config, "max_position_embeddings", needed - 1)
    with pytest.raises(ModelInputError) as err:
        llm.check_fits(frames, "Why?", ratio, "uniform")
    assert str(err.value) == (f"the prompt needs {needed} tokens ({text} text, {visual} visual, {newlines} newline) "
                              f"but {llm.name}'s context is {needed - 1} tokens")  # fmt: skip
    assert err.value.hint == "raise --ratio or use fewer --frames (or shorten the question)"
    assert err.value.exit_code == 2 and isinstance(err.value, InputError) and isinstance(err.value, ModelError)
    full = frames * (64 if llm.layout == "onevision" else 49)
    with pytest.raises(ModelInputError, match=rf"needs {text + full + newlines} tokens \({text} text, {full} visual"):
        llm.check_fits(frames, "Why?", 0.0, "none")

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded although the prompt cannot fit")

    monkeypatch.setattr(llm, "encode", no_encoding)
    with pytest.raises(ModelInputError):
        llm.answer(make_clip(frames), "Why?", ratio=ratio, method="uniform", generation=GEN)


def test_importing_model_errors_does_not_import_torch():
    code = "import sys, fpcli.model; from fpcli.model import ModelError, ModelInputError; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
