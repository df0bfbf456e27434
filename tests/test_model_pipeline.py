"""fpcli.model pipeline on tiny checkpoints: preprocessing, encoding, layouts, transformers equivalence, results."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fpcli.model import GenerationConfig, ModelError, load_model
from fpcli.model.flops import prefill_flops
from fpcli.model.preprocess import Preprocessor, preprocess_frames
from fpcli.model.sequence import time_instruction, visual_sequence

RESULT_KEYS = [
    "video", "question", "answer", "model", "layout", "method", "ratio", "frames", "grid", "tokens",
    "per_frame_kept", "timestamps", "timing_s", "peak_memory_mb", "prefill_tflops", "warnings",
]  # fmt: skip


def make_clip(frames: int, seed: int = 0, height: int = 24, width: int = 40, fps: float = 4.0):
    rng = np.random.default_rng(seed)
    return SimpleNamespace(
        path=f"clip{seed}.mp4",
        frames=rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8),
        timestamps=np.arange(frames, dtype=np.float64) / fps,
        duration=frames / fps,
    )


@pytest.fixture(scope="module")
def ov(tiny_onevision_dir):
    return load_model(tiny_onevision_dir, device="cpu")


@pytest.fixture(scope="module")
def video(tiny_video_dir):
    return load_model(tiny_video_dir, device="cpu")


def test_preprocessing_matches_transformers_pil_processor(tiny_onevision_dir):
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil,
    )

    config = json.loads((tiny_onevision_dir / "preprocessor_config.json").read_text())
    reference = LlavaOnevisionImageProcessorPil(
        **{k: v for k, v in config.items() if k not in ("image_processor_type", "processor_class")}
    )
    frames = make_clip(3, height=41, width=57).frames
    ours = preprocess_frames(frames, Preprocessor.from_dir(tiny_onevision_dir))  # video config, same values
    assert ours.shape == (3, 3, 30, 30) and ours.dtype == torch.float32
    for frame, pixels in zip(frames, ours):
        expected = reference(frame, return_tensors="pt")["pixel_values"][0][0]  # the base (whole-image) view
        torch.testing.assert_close(pixels, expected, atol=1e-6, rtol=0)


def test_encode_grids_per_layout(ov, video):
    frames = make_clip(3).frames
    enc = ov.encode(frames)
    assert enc.features.shape == (3, 64, 32) and enc.grid == (8, 8)  # 15x15 -> ceil(15/2) bilinear
    enc = video.encode(frames)
    assert enc.features.shape == (3, 49, 32) and enc.grid == (7, 7)  # 15x15 -> 2x2 average pooling
    assert enc.encode_s > 0


def test_encode_pooling_matches_transformers(ov):
    """Onevision pooled features equal transformers' get_video_features (minus its trailing newline)."""
    frames = make_clip(4, seed=1).frames
    pixels = preprocess_frames(frames, ov.preprocessor)[None]
    with torch.inference_mode():
        expected = ov.model.get_video_features(pixels).pooler_output[0, :-1]
    torch.testing.assert_close(ov.encode(frames).features.reshape(-1, 32), expected, atol=1e-5, rtol=1e-5)


def test_512_frames_chunked_equals_unchunked(video):
    frames = make_clip(512, seed=2, height=8, width=8).frames
    chunked = video.encode(frames, chunk=48)
    whole = video.encode(frames, chunk=512)
    assert chunked.features.shape == (512, 49, 32)
    torch.testing.assert_close(chunked.features, whole.features, atol=1e-5, rtol=1e-5)
    steps = []
    video.encode(frames[:100], chunk=48, progress=lambda stage, done, total: steps.append((stage, done, total)))
    assert steps == [("encode", 48, 100), ("encode", 96, 100), ("encode", 100, 100)]


def test_512_frames_answer(video):
    clip = make_clip(512, seed=3, height=8, width=8, fps=30.0)
    generation = GenerationConfig(max_new_tokens=2)
    res = video.answer(clip, "What happens?", ratio=0.99, method="uniform", generation=generation)
    assert res.frames == 512 and res.tokens.visual_before == 512 * 49
    assert res.tokens.visual_after == sum(res.per_frame_kept) == round(0.01 * 512 * 49)
    assert res.tokens.newline == 512 * 7
    assert res.tokens.prompt == res.tokens.text + res.tokens.visual_after + res.tokens.newline


def test_onevision_ratio0_equals_transformers(ov):
    """ratio=0: our inputs_embeds give transformers' logits and greedy tokens for input_ids + pixel_values_videos."""
    clip = make_clip(4, seed=4)
    question = "What is the man doing?"
    prepared = ov.prepare(clip, question, ratio=0.0, method="none")
    assert prepared.tokens.visual_after == prepared.tokens.visual_before == 4 * 64

    tok = ov.tokenizer
    messages = [{"role": "user", "content": f"<video>\n{question}"}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, add_special_tokens=False).input_ids
    video_id = ov.config.video_token_index
    at = ids.index(video_id)
    ids = ids[:at] + [video_id] * (4 * 64 + 1) + ids[at + 1 :]  # what the processor's expansion produces
    input_ids = torch.tensor([ids])
    pixels = preprocess_frames(clip.frames, ov.preprocessor)[None]  # [1, T, 3, 30, 30]
    with torch.inference_mode():
        expected = ov.model(input_ids=input_ids, pixel_values_videos=pixels).logits
    assert prepared.inputs_embeds.shape[1] == len(ids)
    with torch.inference_mode():
        logits = ov.model(inputs_embeds=prepared.inputs_embeds, use_cache=False).logits  # [1, L, V]
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)

    res = ov.answer(clip, question, ratio=0.0, method="none", generation=GenerationConfig(max_new_tokens=12))
    reference = ov.model.generate(
        input_ids=input_ids,
        pixel_values_videos=pixels,
        max_new_tokens=12,
        do_sample=False,
        eos_token_id=sorted(ov.eos_token_ids()),
        pad_token_id=tok.pad_token_id,
    )
    assert res.generated_ids == reference[0, len(ids) :].tolist()
    assert res.answer == tok.decode(reference[0, len(ids) :], skip_special_tokens=True).strip()


def test_visual_sequence_video_layout_exact():
    """Newline after each of the H rows of every frame, also after rows with no kept token."""
    frames, grid, dim = 2, (2, 3), 1
    features = torch.arange(frames * 6, dtype=torch.float32).view(frames, 6, dim) + 1  # token i has value i + 1
    newline = torch.tensor([-1.0])
    keep = torch.tensor([1, 2, 9, 11])  # frame 0 row 0: cols 1, 2; frame 0 row 1: none; frame 1 row 1: cols 0, 2
    out, newlines = visual_sequence(features, keep, grid, newline, "video")
    assert newlines == frames * grid[0]
    assert out[:, 0].tolist() == [2, 3, -1, -1, -1, 10, 12, -1]
    out, newlines = visual_sequence(features, keep, grid, newline, "onevision")
    assert (newlines, out[:, 0].tolist()) == (1, [2, 3, 10, 12, -1])


def test_video_layout_sequence_in_prompt(video):
    clip = make_clip(5, seed=5)
    prepared = video.prepare(clip, "Where is the dog?", ratio=0.7, method="random", prune_options={"seed": 1})
    t, h, w = 5, 7, 7
    assert prepared.tokens.newline == t * h
    keep = prepared.pruned.keep.tolist()
    assert keep == sorted(keep) and len(keep) == prepared.tokens.visual_after
    features = video.encode(clip.frames).features.reshape(t * h * w, -1)
    expected = []
    for row in range(t * h):  # LLaVA-Video order, written out with loops as the reference
        expected += [features[i] for i in keep if i // w == row] + [video.vision.image_newline]
    expected = torch.stack(expected)
    content = "<video>\n" + time_instruction(clip.duration, clip.timestamps) + "\nWhere is the dog?"
    prompt = video.tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )
    text = video.tokenizer(prompt, add_special_tokens=False).input_ids
    start = text.index(video.config.video_token_index)
    segment = prepared.inputs_embeds[0, start : start + len(expected)]
    torch.testing.assert_close(segment, expected, atol=0, rtol=0)
    assert prepared.inputs_embeds.shape[1] == len(text) - 1 + len(expected)
    assert prepared.tokens.text == len(text) - 1


def test_time_instruction_matches_lmms_eval_wording():
    assert time_instruction(10.0, [0.0, 1.25, 2.5]) == (
        "The video lasts for 10.00 seconds, and 3 frames are uniformly sampled from it. "
        "These frames are located at 0.00s,1.25s,2.50s.Please answer the following questions related to this video."
    )


def test_answer_result_and_timings(tiny_onevision_dir, tmp_path):
    import shutil

    llm = load_model(shutil.copytree(tiny_onevision_dir, tmp_path / "fresh"), device="cpu")  # a fresh load
    clip = make_clip(6, seed=6)
    first = llm.answer(clip, "Describe the scene.", ratio=0.9, method="uniform", decode_s=0.25,
                       generation=GenerationConfig(max_new_tokens=3))  # fmt: skip
    data = first.to_dict()
    assert list(data) == RESULT_KEYS
    assert list(data["tokens"]) == ["visual_before", "visual_after", "newline", "text", "prompt", "generated"]
    assert list(data["timing_s"]) == ["load", "decode", "encode", "prune", "prefill", "generate", "total"]
    assert list(data["prefill_tflops"]) == ["before", "after"]
    json.dumps(data)  # plain types only
    assert data["grid"] == [8, 8] and data["frames"] == 6 and data["layout"] == "onevision"
    assert data["tokens"]["visual_before"] == 6 * 64 and data["tokens"]["visual_after"] == 38  # round(0.1 * 384)
    assert data["tokens"]["newline"] == 1 and data["tokens"]["generated"] == 3
    assert data["per_frame_kept"] == first.per_frame_kept and sum(first.per_frame_kept) == 38
    assert data["timestamps"] == clip.timestamps.tolist()
    timing = data["timing_s"]
    assert timing["load"] == round(llm.load_s, 4) > 0 and timing["decode"] == 0.25  # JSON: to 0.1 ms
    assert timing["total"] == pytest.approx(sum(v for k, v in timing.items() if k != "total"))
    assert data["prefill_tflops"]["before"] > data["prefill_tflops"]["after"] > 0
    assert data["prefill_tflops"] == {"before": float(f"{first.prefill_tflops.before:.6g}"),
                                      "after": float(f"{first.prefill_tflops.after:.6g}")}
    assert data["peak_memory_mb"] == round(first.peak_memory_mb, 1) > 0
    second = llm.answer(clip, "Describe the scene.", method="uniform", generation=GenerationConfig(max_new_tokens=3))
    assert second.timing_s.load == 0.0  # load time is reported once per loaded model
    assert second.generated_ids == first.generated_ids  # greedy is deterministic


def test_sampling_is_seeded(ov):
    clip = make_clip(2, seed=7)
    sample = lambda seed: ov.answer(  # noqa: E731
        clip, "What?", method="uniform", generation=GenerationConfig(max_new_tokens=6, temperature=1.5, seed=seed)
    ).generated_ids
    assert sample(3) == sample(3)
    assert any(sample(3) != sample(s) for s in (4, 5, 6))


def test_prefill_flops_linear_term_counts_decoder_weights(ov):
    """The analytic linear term equals 2 * (decoder matmul weights) per token."""
    lm = ov.model.model.language_model
    weights = sum(p.numel() for n, p in lm.layers.named_parameters() if n.endswith("proj.weight"))
    config = ov.config.text_config
    lm_head = 2 * config.hidden_size * config.vocab_size
    d_q = config.num_attention_heads * (config.hidden_size // config.num_attention_heads)
    seq = 10
    attention = 2 * config.num_hidden_layers * d_q * seq * (seq + 1)
    assert prefill_flops(config, seq) == 2 * seq * weights + attention + lm_head


def test_errors_are_one_line(ov, monkeypatch):
    import fpcli.model.encode as encode

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    clip = make_clip(3)
    with pytest.raises(ModelError, match=r"the prompt must contain the video token <video> exactly once"):
        ov.answer(clip, "what is <video> here?", method="uniform")
    with pytest.raises(ValueError, match=r"^ratio must be in \[0, 1\), got 1.5$"):
        ov.prepare(clip, "q", ratio=1.5, method="uniform")
    with pytest.raises(ValueError, match="max_new_tokens must be an integer >= 1"):
        GenerationConfig(max_new_tokens=0)
    monkeypatch.setattr(encode, "encode_chunk", out_of_memory)
    with pytest.raises(ModelError) as err:
        ov.answer(clip, "What?", method="uniform")
    assert str(err.value) == (
        "CUDA out of memory while encoding 3 frames; use fewer frames (--frames) or a higher pruning ratio (--ratio)"
    )


def test_inspect_prunes_one_encoding_with_each_method(ov):
    clip = make_clip(4, seed=3)
    clip.warnings = ["cut short"]
    result = ov.inspect(clip, ratio=0.5, method="forestprune", options={"tau_s": 0.5},
                        compare={"uniform": {}, "forestprune": {}, "random": {"seed": 1}}, decode_s=0.125)
    data = result.to_dict()
    assert list(data) == ["video", "model", "layout", "method", "ratio", "frames", "grid", "tokens",
                          "per_frame_kept", "timestamps", "timing_s", "peak_memory_mb", "forest", "compare",
                          "warnings"]
    assert (data["method"], data["ratio"], data["frames"], data["grid"]) == ("forestprune", 0.5, 4, [8, 8])
    assert data["tokens"] == {"visual_before": 256, "visual_after": 128, "newline": 1}
    assert sum(data["per_frame_kept"]) == 128 and data["forest"]["nodes"] > 0
    assert [run["method"] for run in data["compare"]] == ["uniform", "random"]  # the main method is not repeated
    assert data["compare"][0]["per_frame_kept"] == [32, 32, 32, 32] and data["compare"][0]["forest"] is None
    assert data["timing_s"]["load"] == 0.0 and data["timing_s"]["decode"] == 0.125
    assert data["timestamps"] == [0.0, 0.25, 0.5, 0.75] and data["warnings"] == ["cut short"]
    assert result.keep.tolist() == sorted(result.keep.tolist()) and len(result.keep) == 128
