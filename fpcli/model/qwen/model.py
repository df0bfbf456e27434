"""`QwenVideoLLM`: a loaded Qwen2.5-VL or Qwen3-VL checkpoint that encodes clips, prunes and answers.

answer() = geometry + prompt (cheap, checked against the context before any encoding) -> encode_clip (vision tower
in chunks of temporal groups: a ClipFeatures of merged tokens [T', h*w, D], Qwen3-VL's DeepStack features in
extras["deepstack"] [T', h*w, layers, D]) -> start (`fpcli.prune` on them unchanged: a QwenSession; an in-LLM method:
a QwenInLLMSession, fpcli.model.qwen.inllm_session) -> ask (the kept columns of the unpruned prompt at the positions
`get_rope_index` gives it; see fpcli.model.qwen.session).
The same API as `VideoLLM` (encode_clip / start / ask / answer / inspect) so callers need not know the architecture;
`max_pixels` (per frame) overrides the processor's pixel budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor

from fpcli.model.clip_features import ClipFeatures
from fpcli.model.errors import ModelError, ModelInputError
from fpcli.model.flops import prefill_tflops
from fpcli.model.generate import GenerationConfig
from fpcli.model.inspect import Inspects
from fpcli.model.methods import is_in_llm
from fpcli.model.oom import out_of_memory_is_model_error
from fpcli.model.profiles import Progress
from fpcli.model.qwen.arch import QwenArch
from fpcli.model.qwen.encode import encode_groups
from fpcli.model.qwen.generate import QwenLM
from fpcli.model.qwen.inllm import check_in_llm, in_llm_detail
from fpcli.model.qwen.inllm_session import QwenInLLMSession
from fpcli.model.qwen.prompt import QwenPrompt, build_prompt
from fpcli.model.qwen.session import QwenSession, check_fits
from fpcli.model.qwen.video_input import VideoGeometry, VideoSpec, geometry, group_timestamps, seconds_per_group
from fpcli.model.result import AnswerResult
from fpcli.model.timing import now, reset_peak_memory
from fpcli.prune import prune
from fpcli.prune.registry import keep_count

DEFAULT_ENCODE_CHUNK = {"cuda": 16, "cpu": 4}  # temporal groups (2 frames each) per vision-tower call


class QwenVideoLLM(Inspects):
    """A loaded Qwen-VL checkpoint; `layout` is the architecture's label ("qwen2.5-vl" or "qwen3-vl")."""

    def __init__(self, *, name: str, path: Path, arch: QwenArch, default_frames: int, device: torch.device,
                 dtype: torch.dtype, load_s: float, config, spec: VideoSpec, visual, model=None,
                 tokenizer=None):  # fmt: skip
        self.name, self.path, self.arch = name, path, arch
        self.layout = arch.label
        self.default_frames = default_frames
        self.device, self.dtype, self.load_s = device, dtype, load_s
        self.config, self.spec, self.visual, self.model, self.tokenizer = config, spec, visual, model, tokenizer
        self.lm = None if model is None else QwenLM(model)  # what prefill/decode call
        self.encode_chunk = DEFAULT_ENCODE_CHUNK["cuda" if device.type == "cuda" else "cpu"]

    @property
    def vision_only(self) -> bool:
        return self.model is None

    def _require_llm(self) -> None:
        if self.vision_only:
            raise ModelError(f"{self.name} was loaded with vision_only=True; load it fully to answer questions")

    def __repr__(self) -> str:
        kind = "vision-only " if self.vision_only else ""
        return f"QwenVideoLLM({kind}{self.name!r}, layout={self.layout}, device={self.device}, dtype={self.dtype})"

    @property
    def temporal_patch_size(self) -> int:
        """Frames per temporal group: one merged grid of features covers this many sampled frames."""
        return self.spec.temporal_patch_size

    @property
    def context_length(self) -> int:
        return int(self.config.text_config.max_position_embeddings)

    def newline_count(self, frames: int, grid: tuple[int, int]) -> int:
        """Qwen-VL adds no newline embeddings (its rows are told apart by M-RoPE positions)."""
        return 0

    def prefill_tflops(self, seq_len: int) -> float:
        """Analytic LLM prefill TFLOPs for a prompt of `seq_len` tokens (see fpcli.model.flops)."""
        return prefill_tflops(self.config.text_config, seq_len)

    def geometry(self, clip, max_pixels: int | None = None) -> VideoGeometry:
        """Resized size, temporal groups and merged grid of `clip` (raises ModelInputError past the limits)."""
        frames = clip.frames
        return geometry(self.spec, len(frames), int(frames.shape[1]), int(frames.shape[2]), max_pixels)

    def geometry_of(self, features: ClipFeatures) -> VideoGeometry:
        """The geometry `features` were encoded with (frames resize to exact multiples of the merged patch)."""
        (h, w), m, factor = features.grid, self.spec.merge_size, self.spec.factor
        return VideoGeometry(len(features.timestamps), features.frames, h * factor, w * factor, (h * m, w * m), (h, w))

    def frame_size(self, features: ClipFeatures) -> tuple[int, int]:
        """(height, width) of the resized frames the vision tower saw."""
        geo = self.geometry_of(features)
        return geo.height, geo.width

    def embed(self, ids: Tensor) -> Tensor:
        """Text token ids [L] -> their input embeddings [L, D] on the model's device."""
        with torch.inference_mode():
            return self.model.get_input_embeddings()(ids.to(self.device))

    def prompt(self, clip, question: str, geo: VideoGeometry, system_prompt: str | None = None) -> QwenPrompt:
        """The unpruned prompt of `question` about `clip` (or its ClipFeatures: anything with .timestamps)."""
        self._require_llm()
        times = group_timestamps(clip.timestamps, self.spec.temporal_patch_size)
        return build_prompt(self.tokenizer, self.config, self.arch, question, geo, times, system_prompt)

    def encode_clip(self, clip, progress: Progress | None = None, *, decode_s: float = 0.0,
                    max_pixels: int | None = None) -> ClipFeatures:  # fmt: skip
        """The vision tower once over `clip` (duck-typed: .path, .frames [T,H,W,3] uint8, .indices, .timestamps,
        .duration, optionally .warnings): features [T', h*w, D] with the merged grid."""
        geo = self.geometry(clip, max_pixels)
        with out_of_memory_is_model_error("encoding", geo.frames):
            start = now(self.device)
            features, deep = encode_groups(
                self.visual, clip.frames, self.spec, geo, device=self.device, dtype=self.dtype,
                chunk=self.encode_chunk, deepstack=self.arch.deepstack, progress=progress,
            )  # fmt: skip
            encode_s = now(self.device) - start
        return ClipFeatures(
            video=str(clip.path),
            features=features,
            grid=geo.grid,
            timestamps=[float(t) for t in clip.timestamps],
            duration=float(clip.duration),
            frame_indices=[int(i) for i in clip.indices],
            extras={} if deep is None else {"deepstack": deep},
            decode_s=float(decode_s),
            encode_s=encode_s,
            warnings=list(getattr(clip, "warnings", [])),
        )

    def check_context(self, prompt: QwenPrompt, ratio: float, generation: GenerationConfig | None = None,
                      method: str | None = None) -> int:
        """Prompt tokens after pruning (an in-LLM `method`: all of them, every video token enters the LLM);
        ModelInputError when they and the answer (if `generation` is given) do not fit the context."""
        video = int(prompt.video_mask.sum())
        length, detail = prompt.text_tokens + keep_count(ratio, video), f" at ratio {ratio}, {video} visual before"
        if method is not None and is_in_llm(method):
            length, detail = len(prompt.input_ids), in_llm_detail(method)
        room = 0 if generation is None else generation.max_new_tokens
        check_fits(length, room, self.context_length, detail)
        return length

    def check_fits(self, frames: int, question: str, ratio: float, method: str, *, clip=None,
                   options: dict | None = None, time_instruction: bool | None = None,
                   system_prompt: str | None = None) -> None:
        """VideoLLM.check_fits for callers of either kind (eval): ModelInputError when the prompt of `question`
        about `clip` (a VideoClip, before encoding, or its ClipFeatures) pruned at `ratio` is longer than the
        context (the answer's room is ask's check, which knows its length). `clip` is needed: the visual token count
        follows its frame size. An in-LLM method's options are checked against the LLM's layers."""
        self._require_llm()
        if is_in_llm(method):
            check_in_llm(self.model, ratio, method, options)
        if clip is None:
            raise ValueError("a Qwen-VL prompt's length follows the clip's frame size: give clip")
        geo = self.geometry_of(clip) if isinstance(clip, ClipFeatures) else self.geometry(clip)
        self.check_context(self.prompt(clip, question, geo, system_prompt), ratio, method=method)

    def eos_token_ids(self) -> set[int]:
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids = set([eos] if isinstance(eos, int) else (eos or []))
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def start(self, features: ClipFeatures, *, ratio: float, method: str, options: dict | None = None,
              history: bool = False) -> QwenSession | QwenInLLMSession:  # fmt: skip
        """Prune `features` once (timed) and open a session of questions (the prefix prefills on the first); an
        in-LLM method (fastv, framefusion, sttm) prunes inside each question's prefill instead
        (fpcli.model.qwen.inllm_session). Options are checked here, before any work."""
        self._require_llm()
        if history:
            raise ModelInputError("history=True (earlier turns in the prompt) is not available for Qwen-VL models")
        geo = self.geometry_of(features)
        seconds = None if self.arch.timestamps_in_text else seconds_per_group(
            geo.frames, features.duration, self.spec.temporal_patch_size)  # fmt: skip
        if is_in_llm(method):
            values = check_in_llm(self.model, ratio, method, options)
            return QwenInLLMSession(self, features, method, ratio, values, geo, seconds)
        with out_of_memory_is_model_error("pruning", geo.frames):
            tokens = features.features.to(self.device)  # [T', N, D]
            extras = {name: value.to(self.device) for name, value in features.extras.items()}  # deepstack
            start = now(self.device)
            pruned = prune(tokens, geo.grid, ratio, method, extras=extras, **(options or {}))
            prune_s = now(self.device) - start
        return QwenSession(self, features, pruned, prune_s, geo, seconds)

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
        """Answer `question` about `clip`: check the prompt fits, encode_clip, start, ask (`timing_s.load` is 0)."""
        generation = generation or GenerationConfig()
        self._require_llm()
        if is_in_llm(method):
            check_in_llm(self.model, ratio, method, prune_options)
        geo = self.geometry(clip, max_pixels)
        self.check_context(self.prompt(clip, question, geo, system_prompt), ratio, generation, method)
        reset_peak_memory(self.device)
        features = self.encode_clip(clip, progress, decode_s=decode_s, max_pixels=max_pixels)
        session = self.start(features, ratio=ratio, method=method, options=prune_options)
        return session.ask(question, generation, time_instruction=time_instruction, system_prompt=system_prompt)

    def compare(self, clip, question: str, methods: Mapping[str, Mapping], **kwargs) -> None:
        """`ask --compare` runs on the LLaVA layouts only, so far: a ModelInputError."""
        raise ModelInputError(f"comparing methods is available for the LLaVA layouts only, not {self.name} "
                              f"({self.layout})", hint="compare pre-LLM methods with `forestprune stats --compare`")
