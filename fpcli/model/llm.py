"""`VideoLLM`: a loaded checkpoint that encodes clips, prunes their visual tokens and answers questions.

answer() = check_fits (prompt length vs context, before any encoding) -> encode_clip (vision tower, projector,
pooling: a ClipFeatures) -> start (prune, `fpcli.prune`: a ClipSession; or an in-LLM method of fpcli.model.inllm:
an InLLMSession) -> ask (prompt with the kept tokens in the layout's order, prefill + decode, see
fpcli.model.session). Callers with several questions, methods or ratios per
clip call those steps themselves and reuse what they can. Every stage is timed (CUDA-synchronised) and CUDA
out-of-memory anywhere becomes a ModelError that says how to need less memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from fpcli.model.clip_features import ClipFeatures
from fpcli.model.encode import EncodedVideo, VisionParts, encode_frames, pooled_grid
from fpcli.model.errors import ModelError, ModelInputError
from fpcli.model.flops import prefill_tflops
from fpcli.model.generate import GenerationConfig
from fpcli.model.inspect import Inspects
from fpcli.model.inllm.registry import check_for_model
from fpcli.model.inllm.session import InLLMSession
from fpcli.model.methods import is_in_llm, validate_method
from fpcli.model.oom import out_of_memory_is_model_error
from fpcli.model.preprocess import Preprocessor
from fpcli.model.profiles import Progress
from fpcli.model.result import AnswerResult
from fpcli.model.session import ClipSession, Session
from fpcli.model.sequence import conversation, render_prompt, user_text, visual_sequence
from fpcli.model.timing import now, reset_peak_memory
from fpcli.prune import prune
from fpcli.prune.registry import keep_count

if TYPE_CHECKING:
    from fpcli.model.compare import Comparison

DEFAULT_ENCODE_CHUNK = {"cuda": 32, "cpu": 8}  # frames per vision-tower call


class VideoLLM(Inspects):
    """A loaded LLaVA-OneVision-architecture checkpoint with its layout ("onevision" or "video")."""

    temporal_patch_size = 1  # frames per grid of features (Qwen-VL pairs frames)

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
        with out_of_memory_is_model_error("encoding", len(frames)):
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

    def frame_size(self, features: ClipFeatures) -> None:
        """None: the tower squashes every frame to its square input, so a picture keeps the video's own aspect."""
        return None

    def prefill_tflops(self, seq_len: int) -> float:
        """Analytic LLM prefill TFLOPs for a prompt of `seq_len` tokens (see fpcli.model.flops)."""
        return prefill_tflops(self.config.text_config, seq_len)

    def _require_llm(self) -> None:
        if self.vision_only:
            raise ModelError(f"{self.name} was loaded with vision_only=True; load it fully to answer questions")

    def video_token(self) -> tuple[str, int]:
        """The video placeholder token of the prompt and its id."""
        token_id = self.config.video_token_index
        return self.tokenizer.convert_ids_to_tokens(token_id), token_id

    def embed(self, ids: Tensor) -> Tensor:
        """Text token ids [L] -> their input embeddings [L, D] on the model's device."""
        with torch.inference_mode():
            return self.model.get_input_embeddings()(ids.to(self.device))

    def prompt_ids(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        duration: float,
        timestamps: Sequence[float],
        *,
        time_instruction: bool | None = None,
        system_prompt: str | None = None,
    ) -> tuple[Tensor, int]:
        """Text ids [L_text] of the chat-template prompt for `questions` (the video with the first, `answers` to all
        but the last in between) and the index of the one video placeholder in them; duration and timestamps [T]
        (seconds) go into the video layout's time instruction."""
        self._require_llm()
        token, token_id = self.video_token()
        times = [float(t) for t in timestamps]
        first = user_text(self.layout, questions[0], token, float(duration), times, time_instruction)
        messages = conversation([first, *questions[1:]], answers, system_prompt)
        prompt = render_prompt(self.tokenizer, messages, token)
        ids = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids[0]  # [L_text]
        positions = (ids == token_id).nonzero()[:, 0]
        if len(positions) != 1:
            raise ModelError(f"the prompt must contain the video token {token} exactly once (check the question)")
        return ids, int(positions[0])

    def check_fits(self, frames: int, question: str, ratio: float, method: str, *, clip=None, options=None,
                   time_instruction: bool | None = None, system_prompt: str | None = None) -> None:
        """Raise ModelInputError (exit 2) when the prompt of `question` over `frames` frames pruned at `ratio` is
        longer than the LLM's context, or an in-LLM method's `options` name a layer this LLM lacks; no encoding
        (the grid comes from the config). `clip` (.duration, .timestamps) makes the video layout's time
        instruction exact; without it a clip of 0.00 s stands in."""
        self._require_llm()
        if is_in_llm(method):
            self._check_in_llm(ratio, method, options)
        duration, timestamps = (0.0, [0.0] * frames) if clip is None else (clip.duration, clip.timestamps)
        ids, _ = self.prompt_ids([question], [], duration, timestamps, time_instruction=time_instruction,
                                 system_prompt=system_prompt)
        grid = pooled_grid(self.vision.patches_per_side, self.layout)
        total = frames * grid[0] * grid[1]
        # Pre-LLM methods keep K; in-LLM methods prefill every visual token before they drop some.
        visual = total if is_in_llm(method) or not 0 <= ratio < 1 else keep_count(ratio, total)
        text, newlines = len(ids) - 1, self.newline_count(frames, grid)
        needed = text + visual + newlines
        context = self.config.text_config.max_position_embeddings
        if needed > context:
            raise ModelInputError(
                f"the prompt needs {needed} tokens ({text} text, {visual} visual, {newlines} newline) but "
                f"{self.name}'s context is {context} tokens",
                hint="raise --ratio or use fewer --frames (or shorten the question)",
            )

    def _check_in_llm(self, ratio: float, method: str, options: dict | None) -> dict:
        """An in-LLM method's complete options (ValueError as fpcli.prune's for bad ones), or ModelInputError when
        one names a decoder layer this LLM lacks."""
        values = validate_method(ratio, method, **(options or {}))
        try:
            check_for_model(self.model, method, values)
        except ValueError as exc:
            raise ModelInputError(str(exc)) from None
        return values

    def encode_clip(self, clip, progress: Progress | None = None, *, decode_s: float = 0.0,
                    max_pixels: int | None = None) -> ClipFeatures:
        """Vision tower once for `clip` (duck-typed: .path, .frames [T,H,W,3] uint8, .indices, .timestamps,
        .duration, optionally .warnings); `decode_s` is what sampling it took, carried to every result.
        `max_pixels` is Qwen-VL's: anything but None is a ModelInputError here."""
        if max_pixels is not None:
            size = f"{self.preprocessor.width}x{self.preprocessor.height}"
            raise ModelInputError(f"max_pixels applies to Qwen-VL models; {self.name} ({self.layout} layout) resizes "
                                  f"every frame to {size}", hint="leave out --max-pixels")
        encoded = self.encode(clip.frames, progress=progress)
        return ClipFeatures(
            video=str(clip.path),
            features=encoded.features,
            grid=tuple(encoded.grid),
            timestamps=[float(t) for t in clip.timestamps],
            duration=float(clip.duration),
            frame_indices=[int(i) for i in clip.indices],
            extras=encoded.extras,
            decode_s=float(decode_s),
            encode_s=encoded.encode_s,
            warnings=list(getattr(clip, "warnings", [])),
        )

    def start(self, features: ClipFeatures, *, ratio: float, method: str, options: dict | None = None,
              history: bool = False) -> Session:
        """Open a session of questions about `features`. A method before the LLM prunes them once here (timed; see
        fpcli.model.session); an in-LLM method (fastv, framefusion, sttm) gets every visual token and prunes
        inside each question's prefill (fpcli.model.inllm.session). Options are checked here, before any work."""
        self._require_llm()
        tokens = features.features.to(self.device)  # [T, N, D]; a no-op unless they were kept elsewhere
        newline = self.vision.image_newline
        if is_in_llm(method):
            values = self._check_in_llm(ratio, method, options)
            every = torch.arange(tokens.shape[0] * tokens.shape[1], device=self.device)
            visual, newlines = visual_sequence(tokens, every, features.grid, newline, self.layout)  # [T*N+n, D]
            return InLLMSession(self, features, method, ratio, values, visual, newlines, history)
        with out_of_memory_is_model_error("pruning", features.frames):
            extras = {name: value.to(self.device) for name, value in features.extras.items()}  # [T, N, ...]
            start = now(self.device)
            pruned = prune(tokens, features.grid, ratio, method, extras=extras, **(options or {}))
            prune_s = now(self.device) - start
            # a merging method's features (pruned.features) stand in for tokens[keep]
            visual, newlines = visual_sequence(tokens, pruned.keep, features.grid, newline, self.layout,
                                               pruned.features)  # [K+n, D]
        return ClipSession(self, features, pruned, prune_s, visual, newlines, history)

    def compare(self, clip, question: str, methods: Mapping[str, Mapping], *, ratio: float,
                generation: GenerationConfig | None = None, decode_s: float = 0.0, progress: Progress | None = None,
                time_instruction: bool | None = None, system_prompt: str | None = None,
                max_pixels: int | None = None) -> Comparison:
        """Answer `question` about `clip` with each method on one encoding: see fpcli.model.compare."""
        from fpcli.model.compare import compare_methods

        return compare_methods(self, clip, question, methods, ratio=ratio, generation=generation, decode_s=decode_s,
                               progress=progress, time_instruction=time_instruction, system_prompt=system_prompt,
                               max_pixels=max_pixels)

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
        *,
        time_instruction: bool | None = None,
        system_prompt: str | None = None,
        max_pixels: int | None = None,
    ) -> AnswerResult:
        """Answer `question` about `clip` (see encode_clip): check_fits, encode_clip, start, ask. `timing_s.load` is
        0: the caller holds the model and knows when its load should be counted."""
        fit = {"time_instruction": time_instruction, "system_prompt": system_prompt}
        self.check_fits(len(clip.frames), question, ratio, method, clip=clip, options=prune_options, **fit)
        reset_peak_memory(self.device)
        features = self.encode_clip(clip, progress, decode_s=decode_s, max_pixels=max_pixels)
        session = self.start(features, ratio=ratio, method=method, options=prune_options)
        return session.ask(question, generation or GenerationConfig(), **fit)
