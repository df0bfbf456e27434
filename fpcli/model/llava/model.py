"""`LlavaVideoLLM`: a loaded LLaVA-OneVision-architecture checkpoint (layouts "onevision" and "video").

What the family adds to the `VideoLLM` interface (fpcli.model.base): frames go through SigLIP, the projector and the
layout's pooling (fpcli.model.llava.encode: ClipFeatures [T, N, D] with the feature layer's attention and keys as
extras for VisionZip); the visual tokens enter the prompt in the layout's order with its newline embeddings, in the
one video placeholder's place (fpcli.model.llava.sequence); a session pruned before the LLM is a ClipSession
(fpcli.model.llava.session), one with an in-LLM method an InLLMSession (fpcli.model.llava.inllm_session).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from fpcli.model.base import VideoLLM
from fpcli.model.clip_features import ClipFeatures
from fpcli.model.errors import ModelError, ModelInputError
from fpcli.model.llava.encode import EncodedVideo, VisionParts, encode_frames, pooled_grid
from fpcli.model.llava.inllm_session import InLLMSession
from fpcli.model.llava.preprocess import Preprocessor
from fpcli.model.llava.sequence import conversation, render_prompt, user_text, visual_sequence
from fpcli.model.llava.session import ClipSession
from fpcli.model.oom import out_of_memory_is_model_error
from fpcli.model.profiles import MAX_PIXELS_HINT, Progress, check_max_pixels
from fpcli.prune import PruneResult


class LlavaVideoLLM(VideoLLM):
    """A loaded LLaVA-OneVision-architecture checkpoint with its layout ("onevision" or "video")."""

    encode_chunks = {"cuda": 32, "cpu": 8}  # frames per vision-tower call
    eos_sources = ("generation_config", "text_config")
    temporal_patch_size = 1

    def __init__(self, *, name: str, path: Path, layout: str, default_frames: int, device: torch.device,
                 dtype: torch.dtype, load_s: float, config, preprocessor: Preprocessor, vision: VisionParts,
                 model=None, tokenizer=None):
        super().__init__(name=name, path=path, layout=layout, default_frames=default_frames, device=device,
                         dtype=dtype, load_s=load_s, config=config, model=model, tokenizer=tokenizer)
        self.preprocessor = preprocessor
        self.vision = vision

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

    @property
    def vision_tower(self) -> torch.nn.Module:
        return self.vision.tower

    def newline_count(self, frames: int, grid: tuple[int, int]) -> int:
        """Newline embeddings the layout adds to a clip of `frames` frames (independent of pruning)."""
        return 1 if self.layout == "onevision" else frames * grid[0]

    def frame_size(self, features: ClipFeatures) -> None:
        """None: the tower squashes every frame to its square input, so a picture keeps the video's own aspect."""
        return None

    def video_token(self) -> tuple[str, int]:
        """The video placeholder token of the prompt and its id."""
        token_id = self.config.video_token_index
        return self.tokenizer.convert_ids_to_tokens(token_id), token_id

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

    def visual_tokens(self, frames: int, clip, max_pixels: int | None) -> int:
        """frames x the pooled grid of the config (no encoding; `clip` and `max_pixels` do not change it)."""
        grid = pooled_grid(self.vision.patches_per_side, self.layout)
        return frames * grid[0] * grid[1]

    def _check_prompt(self, frames: int, question: str, ratio: float, method: str, entering: Callable[[int], int],
                      clip, *,
                      time_instruction: bool | None, system_prompt: str | None, max_new_tokens: int,
                      max_pixels: int | None) -> None:
        """The prompt of `question` over `frames` frames with the visual tokens that enter the LLM against the
        context; no encoding (the grid comes from the config). `clip` (.duration, .timestamps)
        makes the video layout's time instruction exact; without it a clip of 0.00 s stands in. The answer's
        length is not counted (generation stops at the context)."""
        self._refuse_max_pixels(max_pixels)
        duration, timestamps = (0.0, [0.0] * frames) if clip is None else (clip.duration, clip.timestamps)
        ids, _ = self.prompt_ids([question], [], duration, timestamps, time_instruction=time_instruction,
                                 system_prompt=system_prompt)
        grid = pooled_grid(self.vision.patches_per_side, self.layout)
        visual = entering(frames * grid[0] * grid[1])
        text, newlines = len(ids) - 1, self.newline_count(frames, grid)
        needed = text + visual + newlines
        if needed > self.context_length:
            raise ModelInputError(
                f"the prompt needs {needed} tokens ({text} text, {visual} visual, {newlines} newline) but "
                f"{self.name}'s context is {self.context_length} tokens",
                hint="raise --ratio or use fewer --frames (or shorten the question)",
            )

    def _refuse_max_pixels(self, max_pixels: int | None) -> None:
        """max_pixels is Qwen-VL's: anything but None is a ModelInputError here."""
        try:
            check_max_pixels(self.layout, max_pixels)
        except ValueError as exc:
            raise ModelInputError(str(exc), hint=MAX_PIXELS_HINT) from None

    def encode_clip(self, clip, progress: Progress | None = None, *, decode_s: float = 0.0,
                    max_pixels: int | None = None) -> ClipFeatures:
        """Vision tower once for `clip` (see VideoLLM.encode_clip). `max_pixels` is Qwen-VL's: anything but None
        is a ModelInputError here."""
        self._refuse_max_pixels(max_pixels)
        encoded = self.encode(clip.frames, progress=progress)
        return self.clip_features(clip, encoded.features, encoded.grid, encoded.extras, decode_s=decode_s,
                                  encode_s=encoded.encode_s)

    def _visual(self, features: ClipFeatures, keep: Tensor, merged: Tensor | None = None) -> tuple[Tensor, int]:
        """The visual sequence of the kept tokens `keep` [K] in the layout's order (merged features standing in
        for theirs where a merging method made them) and its newline count."""
        tokens = features.features.to(self.device)  # [T, N, D]; a no-op unless they were kept elsewhere
        return visual_sequence(tokens, keep, features.grid, self.vision.image_newline, self.layout, merged)

    def _pruned_session(self, features: ClipFeatures, pruned: PruneResult, prune_s: float,
                        history: bool) -> ClipSession:
        with out_of_memory_is_model_error("pruning", features.frames):
            visual, newlines = self._visual(features, pruned.keep, pruned.features)  # [K+n, D]
        return ClipSession(self, features, pruned, prune_s, visual, newlines, history)

    def _in_llm_session(self, features: ClipFeatures, method: str, ratio: float, options: dict,
                        history: bool) -> InLLMSession:
        every = torch.arange(features.tokens, device=self.device)
        visual, newlines = self._visual(features, every)  # [T*N+n, D]
        return InLLMSession(self, features, method, ratio, options, visual, newlines, history)

    def _two_stage_session(self, features: ClipFeatures, pruned: PruneResult, prune_s: float, ratio: float,
                           options: dict, history: bool) -> InLLMSession:
        with out_of_memory_is_model_error("pruning", features.frames):
            visual, newlines = self._visual(features, pruned.keep, pruned.features)  # [K_pre+n, D]
        return InLLMSession(self, features, pruned.method, ratio, options, visual, newlines, history,
                            before=pruned, prune_s=prune_s)
