"""fpcli.model pipeline on tiny checkpoints: preprocessing, encoding, layouts, transformers equivalence, results."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fpcli.model import GenerationConfig, ModelError, load_model
from fpcli.model.flops import prefill_flops
from fpcli.model.generate import prefill
from fpcli.model.llava.preprocess import Preprocessor, preprocess_frames
from fpcli.model.llava.sequence import time_instruction, visual_sequence

RESULT_KEYS = [
    "video", "question", "answer", "model", "layout", "method", "ratio", "budget", "frames", "grid", "tokens",
    "per_frame_kept", "timestamps", "timing_s", "peak_memory_mb", "prefill_tflops", "warnings", "cache",
]  # fmt: skip


def make_clip(frames: int, seed: int = 0, height: int = 24, width: int = 40, fps: float = 4.0):
    rng = np.random.default_rng(seed)
    return SimpleNamespace(
        path=f"clip{seed}.mp4",
        frames=rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8),
        indices=np.arange(frames, dtype=np.int64) * 2,
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
    """Onevision pooled features equal transformers' get_video_features (its first 4 x 8x8 rows: recent
    transformers append the newline embedding there, 5.17 and older add it later)."""
    frames = make_clip(4, seed=1).frames
    pixels = preprocess_frames(frames, ov.preprocessor)[None]
    with torch.inference_mode():
        expected = ov.model.get_video_features(pixels).pooler_output[0, : 4 * 64]
    torch.testing.assert_close(ov.encode(frames).features.reshape(-1, 32), expected, atol=1e-5, rtol=1e-5)


def test_chunked_encoding_equals_unchunked(video):
    """Chunks of 48 frames (two full ones and a last short one) stitch to what one pass over the 100 gives; the
    512-frame clip of the next test runs through the same chunking (CPU default: 8 frames a call)."""
    frames = make_clip(100, seed=2, height=8, width=8).frames
    steps = []
    chunked = video.encode(frames, chunk=48, progress=lambda stage, done, total: steps.append((stage, done, total)))
    whole = video.encode(frames, chunk=100)
    assert chunked.features.shape == (100, 49, 32)
    torch.testing.assert_close(chunked.features, whole.features, atol=1e-5, rtol=1e-5)
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
    """ratio=0: our inputs give transformers' logits and greedy tokens for input_ids + pixel_values_videos, both
    as one whole-prompt pass and as the session's two (cached prefix, then the text after the video)."""
    clip = make_clip(4, seed=4)
    question = "What is the man doing?"
    session = ov.start(ov.encode_clip(clip), ratio=0.0, method="none")
    assert session.pruned.k == 4 * 64
    embeds = session.prompt_embeds(question)  # [1, L, D]

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
        logits = ov.model(inputs_embeds=embeds, use_cache=False).logits  # [1, L, V]
    assert embeds.shape[1] == len(ids)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    prefix = at + 4 * 64 + 1
    _, cache = prefill(ov.model, embeds[:, :prefix])
    last, cache = prefill(ov.model, embeds[:, prefix:], cache=cache)
    assert cache.get_seq_length() == len(ids)
    torch.testing.assert_close(last, expected[:, -1], atol=1e-5, rtol=1e-5)

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
    session = video.start(video.encode_clip(clip), ratio=0.7, method="random", options={"seed": 1})
    embeds = session.prompt_embeds("Where is the dog?")
    t, h, w = 5, 7, 7
    assert session.newlines == t * h
    keep = session.pruned.keep.tolist()
    assert keep == sorted(keep) and len(keep) == session.pruned.k == round(0.3 * t * h * w)
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
    segment = embeds[0, start : start + len(expected)]
    torch.testing.assert_close(segment, expected, atol=0, rtol=0)
    assert embeds.shape[1] == len(text) - 1 + len(expected)
    result = session.ask("Where is the dog?", GenerationConfig(max_new_tokens=1))
    assert (result.tokens.text, result.tokens.prompt) == (len(text) - 1, embeds.shape[1])


def test_time_instruction_matches_lmms_eval_wording():
    assert time_instruction(10.0, [0.0, 1.25, 2.5]) == (
        "The video lasts for 10.00 seconds, and 3 frames are uniformly sampled from it. "
        "These frames are located at 0.00s,1.25s,2.50s.Please answer the following questions related to this video."
    )


def test_answer_result_and_timings(ov):
    clip = make_clip(6, seed=6)
    first = ov.answer(clip, "Describe the scene.", ratio=0.9, method="uniform", decode_s=0.25,
                      generation=GenerationConfig(max_new_tokens=3))  # fmt: skip
    data = first.to_dict()
    assert list(data) == RESULT_KEYS
    assert list(data["tokens"]) == ["visual_before", "visual_after", "newline", "text", "prompt", "generated",
                                    "visual_in_llm"]
    assert data["tokens"]["visual_in_llm"] == [{"from_layer": 0, "visual": 38}]
    assert list(data["timing_s"]) == ["load", "decode", "encode", "cache_load", "prune", "prefill", "generate",
                                      "total"]
    assert list(data["prefill_tflops"]) == ["before", "after"]
    json.dumps(data)  # plain types only
    assert data["grid"] == [8, 8] and data["frames"] == 6 and data["layout"] == "onevision"
    assert data["tokens"]["visual_before"] == 6 * 64 and data["tokens"]["visual_after"] == 38  # round(0.1 * 384)
    assert data["tokens"]["newline"] == 1 and data["tokens"]["generated"] == 3
    assert data["per_frame_kept"] == first.per_frame_kept and sum(first.per_frame_kept) == 38
    assert data["timestamps"] == clip.timestamps.tolist()
    timing = data["timing_s"]
    assert timing["load"] == 0.0 and timing["decode"] == 0.25  # the caller that holds the model counts its load
    assert min(timing[stage] for stage in ("encode", "prune", "prefill", "generate")) > 0
    assert data["prefill_tflops"]["before"] > data["prefill_tflops"]["after"] > 0
    assert data["peak_memory_mb"] > 0
    second = ov.answer(clip, "Describe the scene.", method="uniform", generation=GenerationConfig(max_new_tokens=3))
    assert second.generated_ids == first.generated_ids  # greedy is deterministic


def test_json_form_rounds_to_hand_computed_values():
    from fpcli.model.result import AnswerResult, PrefillTflops, Timings, TokenCounts, round_timings

    assert round_timings({"decode": 0.12344, "encode": 1.00007}) == {"decode": 0.1234, "encode": 1.0001,
                                                                     "total": 1.1235}  # fmt: skip
    result = AnswerResult(
        video="v.mp4", question="q", answer="a", model="m", layout="video", method="uniform", ratio=0.5, frames=1,
        grid=(1, 2), tokens=TokenCounts(2, 1, 1, 3, 5, 1), per_frame_kept=[1], timestamps=[0.0],
        timing_s=Timings(load=1.5, decode=0.00004, encode=2.25, prune=0.00016, prefill=0.0333333, generate=1.0),
        peak_memory_mb=1234.56, prefill_tflops=PrefillTflops(before=1.23456789, after=0.000123456789),
    )  # fmt: skip
    data = result.to_dict()
    assert data["timing_s"] == {"load": 1.5, "decode": 0.0, "encode": 2.25, "cache_load": 0.0, "prune": 0.0002,
                                "prefill": 0.0333, "generate": 1.0, "total": 4.7835}  # fmt: skip
    assert data["peak_memory_mb"] == 1234.6
    assert data["prefill_tflops"] == {"before": 1.23457, "after": 0.000123457}


def test_sampling_is_seeded(ov):
    clip = make_clip(2, seed=7)
    sample = lambda seed: ov.answer(  # noqa: E731
        clip, "What?", method="uniform", generation=GenerationConfig(max_new_tokens=6, temperature=1.5, seed=seed)
    ).generated_ids
    assert sample(3) == sample(3)
    assert any(sample(3) != sample(s) for s in (4, 5, 6))


def test_prefill_flops_hand_computed():
    """d=4, d_q=4 (2 heads of 2), d_kv=2, f=8, 1 layer, vocab 10, 3 tokens, counted by hand (1 MAC = 2 FLOPs):
    per token q 16 + k 8 + v 8 + o 16 + gate/up/down 3 * 32 = 144 MACs -> 3 * 288 = 864 FLOPs;
    attention: 1 + 2 + 3 = 6 causal (query, key) pairs, each a QK dot and an AV sum over d_q = 4: 8 MACs -> 96;
    lm_head for the last position only: 4 * 10 MACs -> 80."""
    config = SimpleNamespace(hidden_size=4, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                             head_dim=2, intermediate_size=8, vocab_size=10)  # fmt: skip
    assert prefill_flops(config, 3) == 864 + 96 + 80


def test_prefill_flops_counts_the_decoder_weights(ov):
    """One token more costs 2 FLOPs per decoder matmul weight plus its attention over the tokens before it."""
    lm = ov.model.model.language_model
    weights = sum(p.numel() for n, p in lm.layers.named_parameters() if n.endswith("proj.weight"))
    config = ov.config.text_config
    d_q = lm.layers[0].self_attn.q_proj.out_features
    per_pair = 2 * 2 * d_q * config.num_hidden_layers  # a QK dot and an AV sum of d_q MACs in every layer
    assert prefill_flops(config, 11) - prefill_flops(config, 10) == 2 * weights + 11 * per_pair  # 11 new pairs


def test_errors_are_one_line(ov, monkeypatch):
    import fpcli.model.llava.encode as encode

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    clip = make_clip(3)
    with pytest.raises(ModelError, match=r"the prompt must contain the video token <video> exactly once"):
        ov.answer(clip, "what is <video> here?", method="uniform")
    with pytest.raises(ValueError, match=r"^ratio must be in \[0, 1\), got 1.5$"):
        ov.start(ov.encode_clip(clip), ratio=1.5, method="uniform")
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
    result = ov.inspect(ov.encode_clip(clip, decode_s=0.125), ratio=0.5, method="forestprune", options={"tau_s": 0.5},
                        compare={"uniform": {}, "forestprune": {}, "random": {"seed": 1}})
    data = result.to_dict()
    assert list(data) == ["video", "model", "layout", "method", "ratio", "budget", "frames", "grid", "tokens",
                          "per_frame_kept", "timestamps", "timing_s", "peak_memory_mb", "forest", "compare",
                          "warnings", "cache"]
    assert data["cache"] == "off" and data["timing_s"]["cache_load"] == 0.0
    assert (data["method"], data["ratio"], data["frames"], data["grid"]) == ("forestprune", 0.5, 4, [8, 8])
    assert data["tokens"] == {"visual_before": 256, "visual_after": 128, "newline": 1}
    assert sum(data["per_frame_kept"]) == 128 and data["forest"]["nodes"] > 0
    assert [run["method"] for run in data["compare"]] == ["uniform", "random"]  # the main method is not repeated
    assert data["compare"][0]["per_frame_kept"] == [32, 32, 32, 32] and data["compare"][0]["forest"] is None
    assert data["timing_s"]["load"] == 0.0 and data["timing_s"]["decode"] == 0.125
    assert data["timestamps"] == [0.0, 0.25, 0.5, 0.75] and data["warnings"] == ["cut short"]
    assert result.keep.tolist() == sorted(result.keep.tolist()) and len(result.keep) == 128
