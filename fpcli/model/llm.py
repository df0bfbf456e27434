"""`VideoLLM`: a loaded checkpoint that encodes clips, prunes their visual tokens and answers questions.

answer() = encode (vision tower, projector, pooling) -> prune (`fpcli.prune`) -> assemble the prompt with the kept
tokens in the layout's order -> prefill + generate from inputs_embeds. Every stage is timed (CUDA-synchronised)
and CUDA out-of-memory anywhere becomes a ModelError that says how to need less memory.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from fpcli.model.encode import EncodedVideo, VisionParts, encode_frames
from fpcli.model.errors import ModelError
from fpcli.model.flops import prefill_tflops
from fpcli.model.generate import GenerationConfig, generate
from fpcli.model.preprocess import Preprocessor
from fpcli.model.profiles import Progress
from fpcli.model.result import AnswerResult, PrefillTflops, Timings, TokenCounts
from fpcli.model.sequence import render_prompt, splice, user_text, visual_sequence
from fpcli.model.timing import now, peak_memory_mb, reset_peak_memory
from fpcli.prune import PruneResult, prune

DEFAULT_ENCODE_CHUNK = {"cuda": 32, "cpu": 8}  # frames per vision-tower call


@dataclass
class PreparedInput:
    """The LLM input for one question about one clip, and how it was made."""

    inputs_embeds: Tensor  # [1, L, D]
    pruned: PruneResult
    grid: tuple[int, int]
    tokens: TokenCounts  # generated = 0 until decoding
    prefill_tflops: PrefillTflops
    timing_s: Timings = field(default_factory=Timings)


@contextlib.contextmanager
def _out_of_memory_is_model_error(stage: str, frames: int) -> Iterator[None]:
    try:
        yield
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        raise ModelError(
            f"CUDA out of memory while {stage} {frames} frames; use fewer frames (--frames) or a higher "
            "pruning ratio (--ratio)"
        ) from None


class VideoLLM:
    """A loaded LLaVA-OneVision-architecture checkpoint with its layout ("onevision" or "video")."""

    def __init__(
        self,
        *,
        name: str,
        path: Path,
        layout: str,
        default_frames: int,
        device: torch.device,
        dtype: torch.dtype,
        load_s: float,
        config,
        preprocessor: Preprocessor,
        vision: VisionParts,
        model=None,
        tokenizer=None,
    ):
        self.name = name
        self.path = path
        self.layout = layout
        self.default_frames = default_frames
        self.device = device
        self.dtype = dtype
        self.load_s = load_s
        self.config = config
        self.preprocessor = preprocessor
        self.vision = vision
        self.model = model
        self.tokenizer = tokenizer
        self.encode_chunk = DEFAULT_ENCODE_CHUNK["cuda" if device.type == "cuda" else "cpu"]
        self._load_reported = False

    @property
    def vision_only(self) -> bool:
        return self.model is None

    def __repr__(self) -> str:
        kind = "vision-only " if self.vision_only else ""
        return f"VideoLLM({kind}{self.name!r}, layout={self.layout}, device={self.device}, dtype={self.dtype})"

    def encode(self, frames: np.ndarray, progress: Progress | None = None, chunk: int | None = None) -> EncodedVideo:
        """uint8 frames [T, H, W, 3] -> pooled visual tokens [T, N, D] (before pruning)."""
        if len(frames) == 0:
            raise ModelError("no frames to encode")
        with _out_of_memory_is_model_error("encoding", len(frames)):
            return encode_frames(
                self.vision,
                self.preprocessor,
                frames,
                device=self.device,
                dtype=self.dtype,
                chunk=chunk or self.encode_chunk,
                progress=progress,
            )

    def newline_count(self, frames: int, grid: tuple[int, int]) -> int:
        """Newline embeddings the layout adds to a clip of `frames` frames (independent of pruning)."""
        return 1 if self.layout == "onevision" else frames * grid[0]

    def prefill_tflops(self, seq_len: int) -> float:
        """Analytic LLM prefill TFLOPs for a prompt of `seq_len` tokens (see fpcli.model.flops)."""
        return prefill_tflops(self.config.text_config, seq_len)

    def _video_token(self) -> tuple[str, int]:
        token_id = self.config.video_token_index
        return self.tokenizer.convert_ids_to_tokens(token_id), token_id

    def prepare(
        self,
        clip,
        question: str,
        ratio: float = 0.9,
        method: str = "forestprune",
        prune_options: dict | None = None,
        progress: Progress | None = None,
    ) -> PreparedInput:
        """Encode, prune and assemble the inputs_embeds of one question (no decoding)."""
        if self.vision_only:
            raise ModelError(f"{self.name} was loaded with vision_only=True; load it fully to answer questions")
        token, token_id = self._video_token()  # the prompt first: a bad question fails before any encoding
        text = user_text(self.layout, question, token, float(clip.duration), [float(t) for t in clip.timestamps])
        prompt = render_prompt(self.tokenizer, text, token)
        input_ids = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids[0]  # [L_text]
        positions = (input_ids == token_id).nonzero()[:, 0]
        if len(positions) != 1:
            raise ModelError(f"the prompt must contain the video token {token} exactly once (check the question)")

        with _out_of_memory_is_model_error("processing", len(clip.frames)):
            encoded = self.encode(clip.frames, progress=progress)
            start = now(self.device)
            pruned = prune(
                encoded.features, encoded.grid, ratio, method, extras=encoded.extras, **(prune_options or {})
            )
            prune_s = now(self.device) - start
            visual, newlines = visual_sequence(
                encoded.features, pruned.keep, encoded.grid, self.vision.image_newline, self.layout, pruned.features
            )
            with torch.inference_mode():
                text_embeds = self.model.get_input_embeddings()(input_ids.to(self.device))  # [L_text, D]
                inputs_embeds = splice(text_embeds, int(positions[0]), visual)[None]  # [1, L, D]

        frames_n, tokens_per_frame = encoded.features.shape[:2]
        text_tokens = len(input_ids) - 1
        counts = TokenCounts(
            visual_before=frames_n * tokens_per_frame,
            visual_after=pruned.k,
            newline=newlines,
            text=text_tokens,
            prompt=inputs_embeds.shape[1],
            generated=0,
        )
        flops = PrefillTflops(
            before=self.prefill_tflops(text_tokens + counts.visual_before + newlines),
            after=self.prefill_tflops(counts.prompt),
        )
        timing = Timings(encode=encoded.encode_s, prune=prune_s)
        return PreparedInput(inputs_embeds, pruned, encoded.grid, counts, flops, timing)

    def eos_token_ids(self) -> set[int]:
        """Tokens that end an answer: the generation config's EOS ids and the tokenizer's EOS."""
        ids = set()
        for source in (getattr(self.model, "generation_config", None), self.config.text_config):
            eos = getattr(source, "eos_token_id", None)
            ids.update([eos] if isinstance(eos, int) else (eos or []))
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def answer(
        self,
        clip,
        question: str,
        ratio: float = 0.9,
        method: str = "forestprune",
        prune_options: dict | None = None,
        generation: GenerationConfig | None = None,
        decode_s: float = 0.0,
        progress: Progress | None = None,
    ) -> AnswerResult:
        """Answer `question` about `clip` (duck-typed: .path, .frames [T,H,W,3] uint8, .timestamps, .duration)."""
        generation = generation or GenerationConfig()
        reset_peak_memory(self.device)
        prepared = self.prepare(clip, question, ratio, method, prune_options, progress)
        with _out_of_memory_is_model_error("generating an answer for", len(clip.frames)):
            out = generate(self.model, prepared.inputs_embeds, generation, self.eos_token_ids())
        timing = prepared.timing_s
        timing.load = 0.0 if self._load_reported else self.load_s
        self._load_reported = True
        timing.decode = float(decode_s)
        timing.prefill, timing.generate = out.prefill_s, out.generate_s
        prepared.tokens.generated = len(out.ids)
        return AnswerResult(
            video=str(clip.path),
            question=question,
            answer=self.tokenizer.decode(out.ids, skip_special_tokens=True).strip(),
            model=self.name,
            layout=self.layout,
            method=prepared.pruned.method,
            ratio=float(prepared.pruned.ratio),
            frames=len(clip.frames),
            grid=prepared.grid,
            tokens=prepared.tokens,
            per_frame_kept=prepared.pruned.per_frame.tolist(),
            timestamps=[float(t) for t in clip.timestamps],
            timing_s=timing,
            peak_memory_mb=peak_memory_mb(self.device),
            prefill_tflops=prepared.prefill_tflops,
            generated_ids=out.ids,
        )
