"""`VideoLLM`: the one interface of a loaded video model, and what every model family shares.

    llm = load_model("llava-ov-0.5b")                      # a family's subclass (fpcli.model.llava, fpcli.model.qwen)
    features = llm.encode_clip(clip)                        # the vision tower once
    session = llm.start(features, method="forestprune", ratio=0.9)
    result = session.ask("What is the man doing?", GenerationConfig())

A family implements what differs (how frames become features, how the visual tokens enter its prompt, how its
prompt is checked against the context, its two kinds of session); this base holds the rest once: the method
checks that depend on the model (a method the family cannot run, an option naming a layer the LLM lacks: a usage
error, ModelInputError), pruning before the LLM (timed, CUDA out-of-memory as a ModelError), `answer`,
`compare` and `inspect`, embeddings, end-of-answer tokens and prefill FLOPs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Optional, Sequence

import torch
from torch import Tensor

from fpcli.model.clip_features import ClipFeatures
from fpcli.model.errors import ModelError, ModelInputError
from fpcli.model.flops import prefill_tflops
from fpcli.model.generate import GenerationConfig
from fpcli.model.inspect import inspect_clip
from fpcli.model.methods import (
    check_for_layout,
    check_layers,
    in_llm_stage,
    is_in_llm,
    is_two_stage,
    split_options,
    validate_method,
)
from fpcli.model.oom import out_of_memory_is_model_error
from fpcli.model.profiles import Progress
from fpcli.model.result import AnswerResult
from fpcli.model.session import Session
from fpcli.model.timing import now, reset_peak_memory
from fpcli.prune import PruneResult, prune
from fpcli.prune.registry import budget_ratio, keep_count

if TYPE_CHECKING:
    from fpcli.model.compare import Comparison
    from fpcli.model.inspect import StatsResult


class VideoLLM(ABC):
    """A loaded checkpoint of one family; `layout` names how its visual tokens enter the LLM."""

    encode_chunks: ClassVar[dict[str, int]]  # frames (or temporal groups) per vision-tower call, by device type
    eos_sources: ClassVar[tuple[str, ...]] = ("generation_config",)  # configs whose eos_token_id ends an answer

    def __init__(self, *, name: str, path: Path, layout: str, default_frames: int, device: torch.device,
                 dtype: torch.dtype, load_s: float, config, model=None, tokenizer=None) -> None:
        self.name = name
        self.path = path
        self.layout = layout
        self.default_frames = default_frames
        self.device = device
        self.dtype = dtype
        self.load_s = load_s
        self.config = config
        self.model = model
        self.tokenizer = tokenizer
        self.encode_chunk = self.encode_chunks["cuda" if device.type == "cuda" else "cpu"]

    # -- what each family implements ---------------------------------------------------------------------------

    @property
    @abstractmethod
    def temporal_patch_size(self) -> int:
        """Frames per grid of features (Qwen-VL pairs frames)."""

    @property
    @abstractmethod
    def vision_tower(self) -> torch.nn.Module:
        """The vision tower module (its config says the attention implementation it runs)."""

    @abstractmethod
    def encode_clip(self, clip, progress: Progress | None = None, *, decode_s: float = 0.0,
                    max_pixels: int | None = None) -> ClipFeatures:
        """The vision tower once over `clip` (duck-typed: .path, .frames [T,H,W,3] uint8, .indices, .timestamps,
        .duration, optionally .warnings); `decode_s` is what sampling it took, carried to every result."""

    @abstractmethod
    def newline_count(self, frames: int, grid: tuple[int, int]) -> int:
        """Newline embeddings the layout adds to `frames` grids of features (independent of pruning)."""

    @abstractmethod
    def frame_size(self, features: ClipFeatures) -> tuple[int, int] | None:
        """(height, width) of the frames the tower saw, or None when it squashed them to its square input."""

    @abstractmethod
    def visual_tokens(self, frames: int, clip, max_pixels: int | None) -> int:
        """Visual tokens of `frames` frames (`clip`: the VideoClip or its ClipFeatures, where the count follows the
        frame size) before any pruning, without encoding."""

    @abstractmethod
    def _check_prompt(self, frames: int, question: str, ratio: float, method: str, entering: Callable[[int], int],
                      clip, *,
                      time_instruction: bool | None, system_prompt: str | None, max_new_tokens: int,
                      max_pixels: int | None) -> None:
        """ModelInputError when the prompt of `question` over `frames` frames, with `entering(N)` of its N visual
        tokens entering the LLM (`method` prunes the rest), and `max_new_tokens` of answer do not fit the context,
        or when `max_pixels` does not apply to this family."""

    @abstractmethod
    def _pruned_session(self, features: ClipFeatures, pruned: PruneResult, prune_s: float,
                        history: bool) -> Session:
        """A session over features pruned before the LLM."""

    @abstractmethod
    def _in_llm_session(self, features: ClipFeatures, method: str, ratio: float, options: dict,
                        history: bool) -> Session:
        """A session whose every question prunes inside the LLM with `method` (options validated)."""

    def _two_stage_session(self, features: ClipFeatures, pruned: PruneResult, prune_s: float, ratio: float,
                           options: dict, history: bool) -> Session:
        """A session over features a two-stage method's pre-LLM stage pruned (`pruned`), whose in-LLM stage
        (`options`) prunes inside each question's prefill. A family whose prompts do not take a pruned visual
        block under the in-LLM hooks refuses it."""
        raise ModelInputError(f"{pruned.method} prunes before and inside the LLM, which the {self.layout} layout "
                              "does not run")

    # -- shared ------------------------------------------------------------------------------------------------

    @property
    def vision_only(self) -> bool:
        return self.model is None

    def __repr__(self) -> str:
        kind = "vision-only " if self.vision_only else ""
        return (f"{type(self).__name__}({kind}{self.name!r}, layout={self.layout}, device={self.device}, "
                f"dtype={self.dtype})")

    def _require_llm(self) -> None:
        if self.vision_only:
            raise ModelError(f"{self.name} was loaded with vision_only=True; load it fully to answer questions")

    @property
    def context_length(self) -> int:
        return int(self.config.text_config.max_position_embeddings)

    @property
    def decoder_layers(self) -> int:
        return int(self.config.text_config.num_hidden_layers)

    def prefill_tflops(self, seq_len: int) -> float:
        """Analytic LLM prefill TFLOPs for a prompt of `seq_len` tokens (see fpcli.model.flops)."""
        return prefill_tflops(self.config.text_config, seq_len)

    def embed(self, ids: Tensor) -> Tensor:
        """Text token ids [L] -> their input embeddings [L, D] on the model's device."""
        with torch.inference_mode():
            return self.model.get_input_embeddings()(ids.to(self.device))

    def eos_token_ids(self) -> set[int]:
        """Tokens that end an answer: the family's configs' EOS ids and the tokenizer's EOS."""
        ids: set[int] = set()
        sources = {"generation_config": getattr(self.model, "generation_config", None),
                   "text_config": self.config.text_config}
        for name in self.eos_sources:
            eos = getattr(sources[name], "eos_token_id", None)
            ids.update([eos] if isinstance(eos, int) else (eos or []))
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def clip_features(self, clip, features: Tensor, grid: tuple[int, int], extras: dict[str, Tensor], *,
                      decode_s: float, encode_s: float) -> ClipFeatures:
        """The ClipFeatures of `clip` encoded to `features` [T', N, D] on `grid`, with the clip's timing facts."""
        return ClipFeatures(
            video=str(clip.path),
            features=features,
            grid=tuple(grid),
            timestamps=[float(t) for t in clip.timestamps],
            duration=float(clip.duration),
            frame_indices=[int(i) for i in clip.indices],
            extras=extras,
            decode_s=float(decode_s),
            encode_s=encode_s,
            warnings=list(getattr(clip, "warnings", [])),
        )

    def check_method(self, method: str, ratio: float, options: Optional[Mapping[str, Any]] = None) -> dict:
        """The method's complete options (defaults filled in), checked against this model: ValueError for a bad
        ratio, method or option (as the CLI checks them before loading); ModelInputError (exit 2) for a method
        this family cannot run or an option naming a decoder layer this LLM lacks."""
        values = validate_method(ratio, method, **dict(options or {}))
        try:
            check_for_layout(method, self.layout)
            check_layers(method, values, self.decoder_layers)
        except ValueError as exc:
            raise ModelInputError(str(exc)) from None
        return values

    def budget_ratio(self, budget: int, visual: int, frames: int) -> float:
        """The ratio that keeps `budget` of `visual` tokens (of `frames` frames), 1 - budget / visual; a budget
        over the tokens there are is a ModelInputError (exit 2) with the numbers."""
        try:
            return budget_ratio(budget, visual)
        except ValueError as exc:
            raise ModelInputError(f"{exc} in {frames} frames",
                                  hint="lower --budget or sample more --frames") from None

    def check_fits(self, frames: int, question: str, ratio: float | None, method: str, *, clip=None,
                   options: Optional[Mapping[str, Any]] = None, time_instruction: bool | None = None,
                   system_prompt: str | None = None, max_new_tokens: int = 0,
                   max_pixels: int | None = None, budget: int | None = None) -> None:
        """Before any encoding: the method on this model (check_method), then the prompt of `question` over
        `frames` frames (`clip`: the VideoClip or its ClipFeatures, for the timing text and Qwen-VL's frame size,
        resized by `max_pixels`) against the context, with room for `max_new_tokens`. With `budget` (instead of
        `ratio`), the budget against the clip's visual tokens. ModelInputError (exit 2) when any fails."""
        self._require_llm()
        if budget is not None:
            ratio = self.budget_ratio(budget, self.visual_tokens(frames, clip, max_pixels), frames)
        values = self.check_method(method, ratio, options)
        self._check_prompt(frames, question, ratio, method, lambda total: self.entering(method, ratio, values, total),
                           clip, time_instruction=time_instruction, system_prompt=system_prompt,
                           max_new_tokens=max_new_tokens, max_pixels=max_pixels)

    @staticmethod
    def entering(method: str, ratio: float, values: dict, total: int) -> int:
        """Visual tokens of `total` that enter the LLM with `method` (its checked options `values`): all for an
        in-LLM method, a two-stage method's pre-LLM budget, else the ratio's K."""
        if is_in_llm(method) or not 0 <= ratio < 1:
            return total
        if is_two_stage(method):
            return in_llm_stage(method).pre_budget(ratio, total, **split_options(method, values)[1])
        return keep_count(ratio, total)

    def start(self, features: ClipFeatures, *, ratio: float | None = None, method: str, options: dict | None = None,
              history: bool = False, budget: int | None = None) -> Session:
        """Open a session of questions about `features` at `ratio`, or keeping `budget` visual tokens whatever the
        frame count (the session's ratio is then 1 - budget / visual tokens). A method before the LLM prunes them
        once here (timed); an in-LLM method gets every visual token and prunes inside each question's prefill (to
        keep_count of that ratio, which is the budget). The method and its options are checked against this model
        before any work (check_method)."""
        self._require_llm()
        if (ratio is None) == (budget is None):
            raise ValueError("give ratio or budget, not both and not neither")
        if budget is not None:
            ratio = self.budget_ratio(budget, features.features.shape[0] * features.features.shape[1],
                                      len(features.timestamps))
        values = self.check_method(method, ratio, options)
        if is_in_llm(method):
            session = self._in_llm_session(features, method, float(ratio), values, history)
        else:
            before, inside = split_options(method, values) if is_two_stage(method) else (values, {})
            kept = self.entering(method, ratio, values, features.tokens) if inside else budget  # None: the ratio's
            with out_of_memory_is_model_error("pruning", features.frames):
                tokens = features.features.to(self.device)  # [T', N, D]; a no-op unless they were kept elsewhere
                extras = {name: value.to(self.device) for name, value in features.extras.items()}  # [T', N, ...]
                begin = now(self.device)
                pruned = prune(tokens, features.grid, ratio if kept is None else None, method, budget=kept,
                               extras=extras, **before)
                prune_s = now(self.device) - begin
            if inside:
                session = self._two_stage_session(features, pruned, prune_s, float(ratio), inside, history)
            else:
                session = self._pruned_session(features, pruned, prune_s, history)
        session.budget = budget
        return session

    def answer(self, clip, question: str, ratio: float | None = 0.9, method: str = "forestprune",
               prune_options: dict | None = None, generation: GenerationConfig | None = None, decode_s: float = 0.0,
               progress: Progress | None = None, *, time_instruction: bool | None = None,
               system_prompt: str | None = None, max_pixels: int | None = None,
               budget: int | None = None) -> AnswerResult:
        """Answer `question` about `clip`: check_fits, encode_clip, start, ask (`budget`: keep that many visual
        tokens, the ratio is not used). `timing_s.load` is 0: the caller holds the model and knows when its load
        should be counted."""
        generation = generation or GenerationConfig()
        fit = {"time_instruction": time_instruction, "system_prompt": system_prompt}
        ratio = None if budget is not None else ratio
        self.check_fits(len(clip.frames), question, ratio, method, clip=clip, options=prune_options,
                        max_new_tokens=generation.max_new_tokens, max_pixels=max_pixels, budget=budget, **fit)
        reset_peak_memory(self.device)
        features = self.encode_clip(clip, progress, decode_s=decode_s, max_pixels=max_pixels)
        session = self.start(features, ratio=ratio, method=method, options=prune_options, budget=budget)
        return session.ask(question, generation, **fit)

    def compare(self, clip, question: str, methods: Mapping[str, Mapping], *, ratio: float | None,
                generation: GenerationConfig | None = None, decode_s: float = 0.0, progress: Progress | None = None,
                time_instruction: bool | None = None, system_prompt: str | None = None,
                max_pixels: int | None = None, budget: int | None = None) -> Comparison:
        """Answer `question` about `clip` with each method on one encoding: see fpcli.model.compare."""
        from fpcli.model.compare import compare_methods

        return compare_methods(self, clip, question, methods, ratio=ratio, generation=generation, decode_s=decode_s,
                               progress=progress, time_instruction=time_instruction, system_prompt=system_prompt,
                               max_pixels=max_pixels, budget=budget)

    def inspect(self, features: ClipFeatures, *, ratio: float | None, method: str,
                options: Optional[Mapping[str, Any]] = None,
                compare: Mapping[str, Mapping[str, Any]] | Sequence[str] = (),
                budget: int | None = None) -> StatsResult:
        """What pruning keeps of a clip's features, without generating (needs only the vision tower)."""
        if budget is not None:
            self.budget_ratio(budget, features.features.shape[0] * features.features.shape[1],
                              len(features.timestamps))  # a budget over the tokens: ModelInputError, as in start
        return inspect_clip(self, features, ratio=ratio, method=method, options=options, compare=compare,
                            budget=budget)
