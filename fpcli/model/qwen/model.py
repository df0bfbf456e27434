"""`QwenVideoLLM`: a loaded Qwen2.5-VL or Qwen3-VL checkpoint that encodes clips, prunes and answers.

answer() = geometry + prompt (cheap, checked against the context before any encoding) -> encode_clip (vision tower
in chunks of temporal groups: merged tokens [T', h*w, D]) -> start (`fpcli.prune` on them unchanged, the kept
columns of the unpruned sequence with the positions `get_rope_index` gives it, the prefix prefilled once) ->
QwenSession.ask (the question's tokens prefilled on a copy of that cache, then decoding with explicit positions).
The same API as `VideoLLM` (encode_clip / start / ask / answer) so callers need not know the architecture.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fpcli.model.errors import ModelError
from fpcli.model.generate import GenerationConfig
from fpcli.model.llm import _out_of_memory_is_model_error
from fpcli.model.profiles import Progress
from fpcli.model.qwen.arch import QwenArch
from fpcli.model.qwen.encode import encode_groups
from fpcli.model.qwen.features import QwenClipFeatures
from fpcli.model.qwen.generate import prefill
from fpcli.model.qwen.positions import QwenInput, assemble, full_positions, kept_columns
from fpcli.model.qwen.prompt import QwenPrompt, build_prompt
from fpcli.model.qwen.session import QwenSession, check_fits
from fpcli.model.qwen.video_input import VideoGeometry, VideoSpec, geometry, group_timestamps, seconds_per_group
from fpcli.model.result import AnswerResult
from fpcli.model.timing import now, reset_peak_memory
from fpcli.prune import prune
from fpcli.prune.registry import keep_count

DEFAULT_ENCODE_CHUNK = {"cuda": 16, "cpu": 4}  # temporal groups (2 frames each) per vision-tower call


class QwenVideoLLM:
    """A loaded Qwen-VL checkpoint; `layout` is the architecture's label ("qwen2.5-vl" or "qwen3-vl")."""

    def __init__(self, *, name: str, path: Path, arch: QwenArch, default_frames: int, device: torch.device,
                 dtype: torch.dtype, load_s: float, config, spec: VideoSpec, visual, model=None,
                 tokenizer=None):  # fmt: skip
        self.name, self.path, self.arch = name, path, arch
        self.layout = arch.label
        self.default_frames = default_frames
        self.device, self.dtype, self.load_s = device, dtype, load_s
        self.config, self.spec, self.visual, self.model, self.tokenizer = config, spec, visual, model, tokenizer
        self.encode_chunk = DEFAULT_ENCODE_CHUNK["cuda" if device.type == "cuda" else "cpu"]
        self._load_reported = False

    @property
    def vision_only(self) -> bool:
        return self.model is None

    def _need_llm(self) -> None:
        if self.vision_only:
            raise ModelError(f"{self.name} was loaded with vision_only=True; load it fully to answer questions")

    def __repr__(self) -> str:
        kind = "vision-only " if self.vision_only else ""
        return f"QwenVideoLLM({kind}{self.name!r}, layout={self.layout}, device={self.device}, dtype={self.dtype})"

    @property
    def context_length(self) -> int:
        return int(self.config.text_config.max_position_embeddings)

    def geometry(self, clip, max_pixels: int | None = None) -> VideoGeometry:
        """Resized size, temporal groups and merged grid of `clip` (raises ModelInputError past the limits)."""
        frames = clip.frames
        return geometry(self.spec, len(frames), int(frames.shape[1]), int(frames.shape[2]), max_pixels)

    def prompt(self, clip, question: str, geo: VideoGeometry, system_prompt: str | None = None) -> QwenPrompt:
        times = group_timestamps(clip.timestamps, self.spec.temporal_patch_size)
        return build_prompt(self.tokenizer, self.config, self.arch, question, geo, times, system_prompt)

    def encode_clip(self, clip, progress: Progress | None = None, *, max_pixels: int | None = None,
                    decode_s: float = 0.0) -> QwenClipFeatures:  # fmt: skip
        """The vision tower once over `clip` (duck-typed: .path, .frames [T,H,W,3] uint8, .timestamps, .duration)."""
        geo = self.geometry(clip, max_pixels)
        with _out_of_memory_is_model_error("encoding", geo.frames):
            start = now(self.device)
            features, deep = encode_groups(
                self.visual, clip.frames, self.spec, geo, device=self.device, dtype=self.dtype,
                chunk=self.encode_chunk, deepstack=self.arch.deepstack, progress=progress,
            )  # fmt: skip
            encode_s = now(self.device) - start
        return QwenClipFeatures(
            video=str(clip.path),
            features=features,
            grid=geo.grid,
            timestamps=[float(t) for t in clip.timestamps],
            duration=float(clip.duration),
            frame_indices=[int(i) for i in getattr(clip, "indices", range(geo.frames))],
            extras={} if deep is None else {"deepstack": deep},
            decode_s=float(decode_s),
            encode_s=encode_s,
            frames=geo.frames,
            resized=(geo.height, geo.width),
            temporal_patch_size=self.spec.temporal_patch_size,
        )

    def check_context(self, prompt: QwenPrompt, ratio: float, generation: GenerationConfig) -> int:
        """Prompt tokens after pruning; ModelInputError when they and the answer do not fit the context."""
        video = int(prompt.video_mask.sum())
        length = prompt.text_tokens + keep_count(ratio, video)
        check_fits(length, generation.max_new_tokens, self.context_length, f" at ratio {ratio}, {video} visual before")
        return length

    def eos_token_ids(self) -> set[int]:
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids = set([eos] if isinstance(eos, int) else (eos or []))
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def geometry_of(self, features: QwenClipFeatures) -> VideoGeometry:
        """The geometry `features` were encoded with."""
        (h, w), m = features.grid, self.spec.merge_size
        return VideoGeometry(features.frames, features.temporal_groups, *features.resized, (h * m, w * m), (h, w))

    def start(self, features: QwenClipFeatures, *, ratio: float = 0.9, method: str = "forestprune",
              options: dict | None = None, system_prompt: str | None = None) -> QwenSession:  # fmt: skip
        """Prune once and prefill the prompt prefix (up to the video's end) once; `ask` the session questions."""
        self._need_llm()
        geo = self.geometry_of(features)
        prompt = self.prompt(features, "", geo, system_prompt)  # the prefix does not depend on the question
        with _out_of_memory_is_model_error("processing", geo.frames):
            start = now(self.device)
            pruned = prune(features.features, grid=geo.grid, ratio=ratio, method=method, **(options or {}))
            prune_s = now(self.device) - start
            seconds = None if self.arch.timestamps_in_text else seconds_per_group(
                geo.frames, features.duration, self.spec.temporal_patch_size)  # fmt: skip
            positions = full_positions(self.model, prompt, geo.grid_thw(), seconds)
            batch = assemble(self.model.get_input_embeddings(), prompt, positions, features.features, pruned.keep,
                             features.extras.get("deepstack"))  # fmt: skip
            kept = int(kept_columns(prompt, pruned.keep)[: prompt.prefix_len].sum())
            prefix = QwenInput(batch.inputs_embeds[:, :kept], batch.position_ids[..., :kept], batch.next_position,
                               None if batch.visual_pos_masks is None else batch.visual_pos_masks[:, :kept],
                               batch.deepstack)  # fmt: skip
            start = now(self.device)
            _, cache = prefill(self.model, prefix)
            prefill_s = now(self.device) - start
        return QwenSession(self, features, geo, pruned, system_prompt, seconds, prompt.input_ids[: prompt.prefix_len],
                           kept, cache, prune_s, prefill_s)  # fmt: skip

    def answer(
        self,
        clip,
        question: str,
        ratio: float = 0.9,
        method: str = "forestprune",
        options: dict | None = None,
        generation: GenerationConfig | None = None,
        *,
        max_pixels: int | None = None,
        system_prompt: str | None = None,
        decode_s: float = 0.0,
        progress: Progress | None = None,
    ) -> AnswerResult:
        """Answer `question` about `clip`: check the prompt fits, encode_clip, start, ask."""
        generation = generation or GenerationConfig()
        self._need_llm()
        reset_peak_memory(self.device)
        geo = self.geometry(clip, max_pixels)
        self.check_context(self.prompt(clip, question, geo, system_prompt), ratio, generation)
        features = self.encode_clip(clip, progress, max_pixels=max_pixels, decode_s=decode_s)
        session = self.start(features, ratio=ratio, method=method, options=options, system_prompt=system_prompt)
        with _out_of_memory_is_model_error("generating an answer for", geo.frames):
            result = session.ask(question, generation)
        timing = result.timing_s
        timing.load = 0.0 if self._load_reported else self.load_s
        self._load_reported = True
        timing.encode, timing.prune = features.encode_s, session.prune_s
        timing.prefill += session.prefix_prefill_s
        return result
