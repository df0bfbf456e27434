"""Qwen2.5-VL / Qwen3-VL on tiny checkpoints: transformers equivalence at ratio 0, positions and DeepStack of the kept
tokens, a pruned run against transformers' own forward on the same kept tokens, limits and the JSON form."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fpcli.model import GenerationConfig, ModelError, load_model
from fpcli.model.errors import ModelInputError
from fpcli.model.qwen import encode as qwen_encode
from fpcli.model.generate import cache_name, prefill
from fpcli.model.inspect import frame_keep
from fpcli.model.qwen.positions import assemble, full_positions, kept_columns
from fpcli.model.qwen.prompt import token_types
from fpcli.model.qwen.video_input import group_timestamps, patchify, seconds_per_group
from fpcli.prune import prune

ARCHS = ["qwen2_5_vl", "qwen3_vl"]
QUESTION = "What is the man doing?"


def make_clip(frames: int, seed: int = 0, height: int = 24, width: int = 40, fps: float = 2.0):
    rng = np.random.default_rng(seed)
    return SimpleNamespace(
        path=f"clip{seed}.mp4",
        frames=rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8),
        timestamps=np.arange(frames, dtype=np.float64) / fps,
        duration=frames / fps,
        indices=np.arange(frames),
    )


@pytest.fixture(scope="module", params=ARCHS)
def llm(request, tiny_qwen25_dir, tiny_qwen3_dir):
    path = tiny_qwen25_dir if request.param == "qwen2_5_vl" else tiny_qwen3_dir
    return load_model(path, device="cpu")


def prepared(llm, clip, ratio: float, method: str = "forestprune"):
    """What answer() prefills, step by step: (prompt, unpruned positions, features, pruned, batch)."""
    geo = llm.geometry(clip)
    prompt = llm.prompt(clip, QUESTION, geo)
    feats = llm.encode_clip(clip)
    pruned = prune(feats.features, grid=feats.grid, ratio=ratio, method=method)
    seconds = None if llm.arch.timestamps_in_text else seconds_per_group(geo.frames, clip.duration, 2)
    positions = full_positions(llm.model, prompt, geo.grid_thw(), seconds)
    batch = assemble(llm.model.get_input_embeddings(), prompt, positions, feats.features, pruned.keep,
                     feats.extras.get("deepstack"))  # fmt: skip
    return geo, prompt, positions, feats, pruned, batch, seconds


def reference_kwargs(llm, clip, prompt, geo, seconds) -> dict:
    """transformers' own inputs for the same pixels: input_ids with the video tokens, pixel_values_videos, grid."""
    kwargs = dict(
        input_ids=prompt.input_ids[None],
        pixel_values_videos=patchify(clip.frames, llm.spec, geo),
        video_grid_thw=geo.grid_thw(),
        mm_token_type_ids=token_types(prompt),
    )
    if seconds is not None:
        kwargs["second_per_grid_ts"] = torch.tensor([seconds])
    return kwargs


def prefill_batch(llm, batch):
    """Our prefill of a whole assembled input: (last logits [1, V], cache)."""
    extra = {}
    if batch.deepstack is not None:
        extra = {"visual_pos_masks": batch.visual_pos_masks, "deepstack_visual_embeds": batch.deepstack}
    return prefill(llm.lm, batch.inputs_embeds, position_ids=batch.position_ids, **extra)


def all_logits(llm, batch) -> torch.Tensor:
    extra = {}
    if batch.deepstack is not None:
        extra = {"visual_pos_masks": batch.visual_pos_masks, "deepstack_visual_embeds": batch.deepstack}
    with torch.inference_mode():
        text_model = llm.model.model.language_model
        out = text_model(inputs_embeds=batch.inputs_embeds, position_ids=batch.position_ids, **extra)
        return llm.model.lm_head(out.last_hidden_state)  # [1, L, V]


@pytest.mark.parametrize("frames", [4, 5])
def test_ratio_zero_equals_transformers_forward(llm, frames):
    clip = make_clip(frames)
    geo, prompt, positions, feats, pruned, batch, seconds = prepared(llm, clip, 0.0)
    assert batch.inputs_embeds.shape[1] == len(prompt.input_ids)
    kwargs = reference_kwargs(llm, clip, prompt, geo, seconds)
    with torch.inference_mode():
        reference = llm.model(**kwargs)
        expected_positions, _ = llm.model.model.get_rope_index(
            kwargs["input_ids"], kwargs["mm_token_type_ids"], video_grid_thw=kwargs["video_grid_thw"],
            **({"second_per_grid_ts": kwargs["second_per_grid_ts"]} if seconds is not None else {}),
        )  # fmt: skip
        video = llm.model.model.get_video_features(kwargs["pixel_values_videos"], kwargs["video_grid_thw"])
    torch.testing.assert_close(batch.position_ids, expected_positions, rtol=0, atol=0)
    torch.testing.assert_close(feats.features.reshape(-1, feats.features.shape[-1]), video.pooler_output[0])
    torch.testing.assert_close(all_logits(llm, batch), reference.logits, atol=1e-5, rtol=1e-5)


def test_encoding_in_chunks_equals_one_call(llm):
    clip = make_clip(7)
    llm.encode_chunk = 1
    chunked = llm.encode_clip(clip)
    llm.encode_chunk = 64
    whole = llm.encode_clip(clip)
    assert chunked.features.shape == (4, 60, 32) and len(chunked.timestamps) == 7
    torch.testing.assert_close(chunked.features, whole.features, atol=1e-5, rtol=1e-5)
    if llm.arch.deepstack:
        assert chunked.extras["deepstack"].shape == (4, 60, 2, 32)
        torch.testing.assert_close(chunked.extras["deepstack"], whole.extras["deepstack"], atol=1e-5, rtol=1e-5)
    else:
        assert chunked.extras == {}


def test_kept_positions_are_the_unpruned_columns(llm):
    clip = make_clip(6)
    geo, prompt, positions, feats, pruned, batch, _ = prepared(llm, clip, 0.8)
    video_columns = prompt.video_mask.nonzero()[:, 0]
    text_columns = (~prompt.video_mask).nonzero()[:, 0]
    expected = torch.cat([video_columns[pruned.keep], text_columns]).sort().values
    assert torch.equal(kept_columns(prompt, pruned.keep).nonzero()[:, 0], expected)
    assert torch.equal(batch.position_ids[:, 0], positions[:, expected])
    assert batch.inputs_embeds.shape[1] == len(expected) == prompt.text_tokens + pruned.k
    assert batch.next_position == int(positions.max()) + 1
    # the kept video tokens sit at their (group, row, col) in the unpruned 3-D grid: t/h/w = start + (time, row, col)
    t, h, w = batch.position_ids[:, 0, prompt.video_mask[expected]]  # [K] each
    group, rows, cols = pruned.keep // 60, (pruned.keep % 60) // 10, pruned.keep % 10
    start = w - cols  # the group's start (Qwen3-VL: after its timestamp text) or the video's (Qwen2.5-VL)
    assert torch.equal(h - start, rows)
    if llm.arch.timestamps_in_text:
        assert torch.equal(t, start) and bool((start[1:] >= start[:-1]).all())
    else:  # one start; temporal ids spaced tokens_per_second (2) x seconds per group (2 frames at 2 fps = 1 s)
        assert torch.equal(start, start[:1].expand(len(start)))
        assert torch.equal(t - start, group * 2)


def test_pruned_run_equals_transformers_forward_on_the_kept_tokens(llm):
    """Feed transformers' own forward the kept tokens' ids, features (and DeepStack) and positions."""
    import inspect

    from transformers.modeling_outputs import BaseModelOutputWithPooling

    if "mm_encoder_outputs" not in inspect.signature(llm.model.forward).parameters:
        pytest.skip("this transformers' forward takes no precomputed vision features (mm_encoder_outputs)")

    clip = make_clip(6)
    geo, prompt, positions, feats, pruned, batch, _ = prepared(llm, clip, 0.7)
    columns = kept_columns(prompt, pruned.keep)
    flat = feats.features.reshape(-1, feats.features.shape[-1])[pruned.keep]
    video = BaseModelOutputWithPooling(pooler_output=[flat])
    if llm.arch.deepstack:
        deep = feats.extras["deepstack"].reshape(-1, 2, 32)[pruned.keep]
        video.deepstack_features = [[deep[:, i]] for i in range(2)]
    with torch.inference_mode():
        reference = llm.model(
            input_ids=prompt.input_ids[columns][None], position_ids=positions[:, columns][:, None],
            mm_encoder_outputs={"video": video},
        )  # fmt: skip
        ours, _ = prefill_batch(llm, batch)
    torch.testing.assert_close(all_logits(llm, batch), reference.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours, reference.logits[:, -1], atol=1e-5, rtol=1e-5)


def test_answer_decodes_at_the_unpruned_positions(llm):
    """Greedy answer == a manual loop through transformers' forward with position next_position + i."""
    clip = make_clip(4)
    result = llm.answer(clip, QUESTION, ratio=0.75, generation=GenerationConfig(max_new_tokens=6))
    *_, batch, _ = prepared(llm, clip, 0.75)
    ids = []
    with torch.inference_mode():
        logits, cache = prefill_batch(llm, batch)
        ids.append(int(logits.argmax()))
        while len(ids) < len(result.generated_ids):
            position = torch.full((3, 1, 1), batch.next_position + len(ids) - 1)
            kv = cache_name(llm.model)  # `cache` in recent transformers, `past_key_values` in 5.17
            out = llm.model(input_ids=torch.tensor([[ids[-1]]]), position_ids=position, use_cache=True, **{kv: cache})
            cache = getattr(out, kv)
            ids.append(int(out.logits[0, -1].argmax()))
    assert result.generated_ids == ids


def test_session_answers_each_question_as_a_fresh_answer(llm):
    clip = make_clip(6)
    generation = GenerationConfig(max_new_tokens=8)
    session = llm.start(llm.encode_clip(clip), ratio=0.8, method="forestprune")
    for question in (QUESTION, "Describe the scene.", QUESTION):
        asked = session.ask(question, generation)
        fresh = llm.answer(clip, question, ratio=0.8, generation=generation)
        assert asked.generated_ids == fresh.generated_ids and asked.to_dict()["tokens"] == fresh.to_dict()["tokens"]
    assert (session.prefills, session.questions) == (1, 3)  # the prefix once; the stages paid on the first result
    custom = session.ask(QUESTION, generation, system_prompt="Answer briefly.")
    fresh = llm.answer(clip, QUESTION, ratio=0.8, generation=generation, system_prompt="Answer briefly.")
    assert custom.generated_ids == fresh.generated_ids and session.prefills == 2
    assert custom.timing_s.prefill > 0 and custom.timing_s.prune == 0
    with pytest.raises(ModelInputError, match="plus 4096 new tokens"):
        session.ask(QUESTION, GenerationConfig(max_new_tokens=4096))
    with pytest.raises(ModelInputError, match="time instruction is LLaVA-Video's"):
        session.ask(QUESTION, generation, time_instruction=True)
    with pytest.raises(ModelInputError, match="history=True"):
        llm.start(llm.encode_clip(clip), ratio=0.8, method="forestprune", history=True)


def test_qwen3_timestamps_stay_for_every_group(tiny_qwen3_dir):
    llm = load_model(tiny_qwen3_dir, device="cpu")
    clip = make_clip(5, fps=4.0)  # frames at 0, .25, .5, .75, 1.0 s; the last group is (1.0, 1.0 repeated)
    geo = llm.geometry(clip)
    text = llm.tokenizer.decode(llm.prompt(clip, QUESTION, geo).input_ids)
    assert [text.count(f"<{t} seconds>") for t in ("0.1", "0.6", "1.0")] == [1, 1, 1]
    assert group_timestamps(clip.timestamps, 2) == [0.125, 0.625, 1.0]
    # a keep that empties the middle group keeps its timestamp and its vision start/end tokens
    prompt = llm.prompt(clip, QUESTION, geo)
    keep = torch.tensor([0, 1, 120])
    columns = kept_columns(prompt, keep)
    kept_text = llm.tokenizer.decode(prompt.input_ids[columns])
    assert "<0.6 seconds><|vision_start|><|vision_end|>" in kept_text
    assert kept_text.count("<|vision_start|>") == 3


def test_single_frame_and_odd_frames_pad_with_the_last_frame(llm):
    one = make_clip(1)
    assert llm.encode_clip(one).features.shape[:2] == (1, 60)
    result = llm.answer(one, QUESTION, ratio=0.5, generation=GenerationConfig(max_new_tokens=2))
    assert (result.frames, result.temporal_groups, result.per_frame_kept) == (1, 1, [30])
    odd = make_clip(3)
    padded = SimpleNamespace(**{**vars(odd), "frames": np.concatenate([odd.frames, odd.frames[-1:]])})
    torch.testing.assert_close(llm.encode_clip(odd).features, llm.encode_clip(padded).features)


def test_tiny_and_huge_frames_and_limits(llm):
    tiny = llm.geometry(make_clip(2, height=3, width=5))
    assert (tiny.height, tiny.width) == ((8, 12) if llm.arch.model_type == "qwen2_5_vl" else (4, 8))
    huge = llm.geometry(make_clip(2, height=1080, width=1920))
    # per-frame cap: Qwen2.5-VL its longest_edge (64 tokens); Qwen3-VL 768 tokens (its longest_edge covers the clip)
    cap = 64 * 16 if llm.arch.model_type == "qwen2_5_vl" else 768 * 16
    assert llm.spec.frame_pixel_cap(2) == cap
    assert huge.height % 4 == 0 and huge.width % 4 == 0 and cap / 2 < huge.height * huge.width <= cap
    assert llm.geometry(make_clip(2, height=1080, width=1920), max_pixels=256).grid == (3, 5)  # 12x20 px
    with pytest.raises(ModelInputError, match="aspect ratio over 200"):
        llm.geometry(make_clip(2, height=2, width=500))
    with pytest.raises(ModelInputError, match="below one merged token"):
        llm.geometry(make_clip(2), max_pixels=15)


def test_prompt_longer_than_context_fails_before_encoding(llm, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("encoded a clip whose prompt cannot fit")

    monkeypatch.setattr("fpcli.model.qwen.model.encode_groups", never)
    clip = make_clip(140, height=32, width=32)  # 70 groups x 64 tokens = 4480 visual tokens, context 4096
    with pytest.raises(ModelInputError, match=r"\(\d+ tokens after pruning at ratio 0.0, 4480 visual before\) "
                       r"plus 128 new tokens exceeds the model's context of 4096"):
        llm.answer(clip, QUESTION, ratio=0.0)
    llm.check_fits(len(clip.frames), QUESTION, 0.9, "forestprune", clip=clip,
                   max_new_tokens=GenerationConfig().max_new_tokens)  # 448 visual tokens after pruning: it fits
    with pytest.raises(ModelInputError, match="plus 4096 new tokens"):
        llm.answer(make_clip(2), QUESTION, ratio=0.9, generation=GenerationConfig(max_new_tokens=4096))
    assert qwen_encode.encode_groups is not never


def test_answer_result_json(llm):
    result = llm.answer(make_clip(5), QUESTION, ratio=0.9, generation=GenerationConfig(max_new_tokens=3))
    out = result.to_dict()
    assert (out["frames"], out["temporal_groups"], out["grid"]) == (5, 3, [6, 10])
    assert out["layout"] == llm.arch.label and out["model"] == llm.name
    tokens = out["tokens"]
    assert (tokens["visual_before"], tokens["visual_after"], tokens["newline"]) == (180, 18, 0)
    assert tokens["prompt"] == tokens["text"] + 18 and len(out["per_frame_kept"]) == 3
    assert sum(out["per_frame_kept"]) == 18 and len(out["timestamps"]) == 5
    assert out["prefill_tflops"]["after"] < out["prefill_tflops"]["before"]


def test_layout_must_match_the_checkpoint(tiny_qwen25_dir):
    with pytest.raises(ModelError, match="is a 'qwen2_5_vl' checkpoint, not qwen3_vl"):
        load_model(tiny_qwen25_dir, layout="qwen3-vl", device="cpu")


@pytest.mark.parametrize("arch", ARCHS)
def test_vision_only_encodes_the_same_without_the_llm(arch, tiny_qwen25_dir, tiny_qwen3_dir):
    path = tiny_qwen25_dir if arch == "qwen2_5_vl" else tiny_qwen3_dir
    full, vision = load_model(path, device="cpu"), load_model(path, device="cpu", vision_only=True)
    assert vision.vision_only and vision.model is None and repr(vision).startswith("QwenVideoLLM(vision-only ")
    clip = make_clip(4)
    ours, reference = vision.encode_clip(clip), full.encode_clip(clip)
    torch.testing.assert_close(ours.features, reference.features, rtol=0, atol=0)
    assert ours.extras.keys() == reference.extras.keys()
    with pytest.raises(ModelError, match="loaded with vision_only=True"):
        vision.answer(clip, QUESTION)


def test_system_prompt_replaces_the_default(tiny_qwen25_dir):
    llm = load_model(tiny_qwen25_dir, device="cpu")
    clip = make_clip(2)
    geo = llm.geometry(clip)
    default = llm.tokenizer.decode(llm.prompt(clip, QUESTION, geo).input_ids)
    custom = llm.tokenizer.decode(llm.prompt(clip, QUESTION, geo, system_prompt="Answer briefly.").input_ids)
    assert default.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert custom.startswith("<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\n<|vision_start|>")
    assert custom.endswith(f"<|vision_end|>{QUESTION}<|im_end|>\n<|im_start|>assistant\n")


@given(st.data())
def test_assemble_keeps_text_and_the_kept_tokens_in_order(data):
    """Any keep set: text columns all stay, video columns stay exactly at keep, with their embeddings and ids."""
    from fpcli.model.qwen.prompt import QwenPrompt

    groups, per_group = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 6))
    before, between, after = data.draw(st.integers(1, 5)), data.draw(st.integers(0, 3)), data.draw(st.integers(1, 5))
    mask = [False] * before
    for g in range(groups):  # Qwen3-style: text between groups when `between` > 0
        mask += [True] * per_group + [False] * (between if g < groups - 1 else 0)
    mask += [False] * after
    video_mask = torch.tensor(mask)
    ids = torch.where(video_mask, 7, torch.arange(len(mask)) % 5)
    prompt = QwenPrompt(ids, video_mask, prefix_len=int(video_mask.nonzero()[-1, 0]) + 2)
    total = groups * per_group
    keep = torch.tensor(sorted(data.draw(st.sets(st.integers(0, total - 1), min_size=1))))
    positions = torch.randint(0, 100, (3, len(mask)))
    features = torch.randn(groups, per_group, 4)
    deep = torch.randn(groups, per_group, 2, 4)
    embed = torch.nn.Embedding(8, 4)
    batch = assemble(embed, prompt, positions, features, keep, deep)
    columns = kept_columns(prompt, keep)
    assert int(columns.sum()) == prompt.text_tokens + len(keep) == batch.inputs_embeds.shape[1]
    assert torch.equal(batch.position_ids[:, 0], positions[:, columns])
    here = batch.visual_pos_masks[0]
    assert torch.equal(video_mask[columns], here)
    torch.testing.assert_close(batch.inputs_embeds[0, here], features.reshape(total, 4)[keep])
    torch.testing.assert_close(batch.inputs_embeds[0, ~here], embed(ids[columns][~here]).detach())
    torch.testing.assert_close(torch.stack(batch.deepstack, dim=1), deep.reshape(total, 2, 4)[keep])


def test_frame_keep_puts_each_group_on_its_frames():
    keep = torch.tensor([5, 60 + 7])  # 3 frames: groups (0, 1) and (2, padding)
    assert frame_keep(keep, 3, 2, 60).tolist() == [5, 60 + 5, 120 + 7]
    assert frame_keep(keep, 3, 1, 60) is keep


def test_inspect_reports_groups_and_keeps_per_frame(tiny_qwen3_dir):
    vision = load_model(tiny_qwen3_dir, device="cpu", vision_only=True)
    features = vision.encode_clip(make_clip(5), max_pixels=16 * 16)
    result = vision.inspect(features, ratio=0.5, method="forestprune", compare=["uniform"])
    out = result.to_dict()
    # 24x40 frames under 256 pixels: 12x20, a 3x5 merged grid (what the tower saw is what the picture shows)
    assert (out["frames"], out["temporal_groups"], out["grid"], result.frame_size) == (5, 3, [3, 5], (12, 20))
    assert out["tokens"] == {"visual_before": 45, "visual_after": 23, "newline": 0}
    assert len(out["per_frame_kept"]) == 3 and sum(out["per_frame_kept"]) == 23
    assert out["compare"][0]["method"] == "uniform" and out["layout"] == "qwen3-vl"
    per_frame = np.bincount(result.keep.numpy() // 15, minlength=5).tolist()  # kept tokens drawn on each frame
    groups = out["per_frame_kept"]
    assert per_frame == [groups[0], groups[0], groups[1], groups[1], groups[2]]


def test_max_pixels_is_a_qwen_setting(tiny_onevision_dir):
    llava = load_model(tiny_onevision_dir, device="cpu", vision_only=True)
    with pytest.raises(ModelInputError, match="^max_pixels applies to Qwen-VL models; the onevision layout resizes "
                                              "every frame to the vision tower.s square input$"):
        llava.encode_clip(make_clip(2), max_pixels=1024)


def test_chat_template_from_the_processor_file_or_a_clear_error(tiny_qwen3_dir, tmp_path):
    import json
    import shutil

    copy = shutil.copytree(tiny_qwen3_dir, tmp_path / "ckpt")
    template = (copy / "chat_template.jinja").read_text()
    (copy / "chat_template.jinja").unlink()
    config = json.loads((copy / "tokenizer_config.json").read_text())
    assert "chat_template" not in config
    (copy / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    assert load_model(copy, device="cpu").tokenizer.chat_template == template
    (copy / "chat_template.json").unlink()
    with pytest.raises(ModelError, match="has no chat template"):
        load_model(copy, device="cpu")


def test_features_round_trip_through_tensors_and_meta(llm):
    import json

    feats = llm.encode_clip(make_clip(3))
    meta = json.loads(json.dumps(feats.meta()))
    back = type(feats).from_parts(feats.tensors(), meta)
    assert (back.grid, back.timestamps, back.frames) == (feats.grid, feats.timestamps, 2)
    assert back.tensors().keys() == feats.tensors().keys()
    assert llm.geometry_of(back) == llm.geometry(make_clip(3))
    session, fresh = llm.start(back, ratio=0.5, method="forestprune"), llm.start(feats, ratio=0.5, method="forestprune")
    assert session.ask(QUESTION, GenerationConfig(max_new_tokens=4)).generated_ids == fresh.ask(
        QUESTION, GenerationConfig(max_new_tokens=4)).generated_ids  # fmt: skip
