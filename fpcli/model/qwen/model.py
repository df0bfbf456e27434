"""`QwenVideoLLM`: a loaded Qwen2.5-VL or Qwen3-VL checkpoint, the `VideoLLM` interface (fpcli.model.base).

What the family adds: geometry + prompt (cheap, checked against the context before any encoding); encode_clip (the
vision tower in chunks of temporal groups: a ClipFeatures of merged tokens [T', h*w, D], Qwen3-VL's DeepStack
features in extras["deepstack"] [T', h*w, layers, D]); a session pruned before the LLM is a QwenSession (the kept
columns of the unpruned prompt at the positions `get_rope_index` gives it; see fpcli.model.qwen.session), one
with an in-LLM method a QwenInLLMSession (fpcli.model.qwen.inllm_session).
`max_pixels` (per frame) overrides the processor's pixel budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from fpcli.model.base import VideoLLM
from fpcli.model.clip_features import ClipFeatures
from fpcli.model.errors import ModelInputError
from fpcli.model.methods import is_in_llm
from fpcli.model.oom import out_of_memory_is_model_error
from fpcli.model.profiles import Progress
from fpcli.model.qwen.arch import QwenArch
from fpcli.model.qwen.encode import encode_groups
from fpcli.model.qwen.generate import QwenLM
from fpcli.model.qwen.inllm import in_llm_detail
from fpcli.model.qwen.inllm_session import QwenInLLMSession
from fpcli.model.qwen.prompt import QwenPrompt, build_prompt
from fpcli.model.qwen.session import QwenSession, check_fits
from fpcli.model.qwen.video_input import VideoGeometry, VideoSpec, geometry, group_timestamps, seconds_per_group
from fpcli.model.timing import now
from fpcli.prune import PruneResult


class QwenVideoLLM(VideoLLM):
    """A loaded Qwen-VL checkpoint; `layout` is the architecture's label ("qwen2.5-vl" or "qwen3-vl")."""

    encode_chunks = {"cuda": 16, "cpu": 4}  # temporal groups (2 frames each) per vision-tower call

    def __init__(self, *, name: str, path: Path, arch: QwenArch, default_frames: int, device: torch.device,
                 dtype: torch.dtype, load_s: float, config, spec: VideoSpec, visual, model=None,
                 tokenizer=None):  # fmt: skip
        super().__init__(name=name, path=path, layout=arch.label, default_frames=default_frames, device=device,
                         dtype=dtype, load_s=load_s, config=config, model=model, tokenizer=tokenizer)
        self.arch, self.spec, self.visual = arch, spec, visual
        self.lm = None if model is None else QwenLM(model)  # what prefill/decode call

    @property
    def temporal_patch_size(self) -> int:
        """Frames per temporal group: one merged grid of features covers this many sampled frames."""
        return self.spec.temporal_patch_size

    @property
    def vision_tower(self) -> torch.nn.Module:
        return self.visual

    def newline_count(self, frames: int, grid: tuple[int, int]) -> int:
        """Qwen-VL adds no newline embeddings (its rows are told apart by M-RoPE positions)."""
        return 0

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

    def prompt(self, clip, question: str, geo: VideoGeometry, system_prompt: str | None = None,
               time_instruction: bool | None = None) -> QwenPrompt:
        """The unpruned prompt of `question` about `clip` (or its ClipFeatures: anything with .timestamps).
        time_instruction is LLaVA-Video's: only None or False (Qwen-VL prompts carry their own timing)."""
        self._require_llm()
        if time_instruction:
            raise ModelInputError("the time instruction is LLaVA-Video's; Qwen-VL prompts carry their own timing")
        times = group_timestamps(clip.timestamps, self.spec.temporal_patch_size)
        return build_prompt(self.tokenizer, self.config, self.arch, question, geo, times, system_prompt)

    def encode_clip(self, clip, progress: Progress | None = None, *, decode_s: float = 0.0,
                    max_pixels: int | None = None) -> ClipFeatures:  # fmt: skip
        """The vision tower once over `clip` (see VideoLLM.encode_clip): features [T', h*w, D] with the merged
        grid, resized to `max_pixels` per frame where given."""
        geo = self.geometry(clip, max_pixels)
        with out_of_memory_is_model_error("encoding", geo.frames):
            start = now(self.device)
            features, deep = encode_groups(
                self.visual, clip.frames, self.spec, geo, device=self.device, dtype=self.dtype,
                chunk=self.encode_chunk, deepstack=self.arch.deepstack, progress=progress,
            )  # fmt: skip
            encode_s = now(self.device) - start
        extras = {} if deep is None else {"deepstack": deep}
        return self.clip_features(clip, features, geo.grid, extras, decode_s=decode_s, encode_s=encode_s)

    def visual_tokens(self, frames: int, clip, max_pixels: int | None) -> int:
        """Temporal groups x merged grid of `clip` (a VideoClip resized by `max_pixels`, or its ClipFeatures)."""
        if clip is None:
            raise ValueError("a Qwen-VL clip's visual tokens follow its frame size: give clip")
        return (self.geometry_of(clip) if isinstance(clip, ClipFeatures) else self.geometry(clip, max_pixels)).tokens

    def _check_prompt(self, frames: int, question: str, ratio: float, method: str, entering: Callable[[int], int],
                      clip, *, time_instruction: bool | None, system_prompt: str | None, max_new_tokens: int,
                      max_pixels: int | None) -> None:
        """The prompt of `question` about `clip` (a VideoClip, before encoding, or its ClipFeatures) with the
        visual tokens that enter the LLM, and `max_new_tokens` of answer, against the context. `clip` is needed:
        the visual token count follows its frame size (resized by `max_pixels`)."""
        if clip is None:
            raise ValueError("a Qwen-VL prompt's length follows the clip's frame size: give clip")
        geo = self.geometry_of(clip) if isinstance(clip, ClipFeatures) else self.geometry(clip, max_pixels)
        prompt = self.prompt(clip, question, geo, system_prompt, time_instruction)
        video = int(prompt.video_mask.sum())
        if is_in_llm(method):  # every video token enters the LLM
            check_fits(len(prompt.input_ids), max_new_tokens, self.context_length, in_llm_detail(method))
            return
        check_fits(prompt.text_tokens + entering(video), max_new_tokens, self.context_length,
                   f" at ratio {ratio}, {video} visual before")

    def _seconds_per_group(self, features: ClipFeatures) -> float | None:
        """Qwen2.5-VL's second_per_grid_ts for the M-RoPE time positions; None for Qwen3-VL (timestamps in text)."""
        if self.arch.timestamps_in_text:
            return None
        return seconds_per_group(features.frames, features.duration, self.spec.temporal_patch_size)

    def _pruned_session(self, features: ClipFeatures, pruned: PruneResult, prune_s: float,
                        history: bool) -> QwenSession:
        _refuse_history(history)
        return QwenSession(self, features, pruned, prune_s, self.geometry_of(features),
                           self._seconds_per_group(features))

    def _in_llm_session(self, features: ClipFeatures, method: str, ratio: float, options: dict,
                        history: bool) -> QwenInLLMSession:
        _refuse_history(history)
        return QwenInLLMSession(self, features, method, ratio, options, self.geometry_of(features),
                                self._seconds_per_group(features))


def _refuse_history(history: bool) -> None:
    if history:
        raise ModelInputError("history=True (earlier turns in the prompt) is not available for Qwen-VL models")
