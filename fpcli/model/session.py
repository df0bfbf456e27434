"""What a session of questions about one encoded clip is, and what the sessions of every family share.

A session (`VideoLLM.start` opens one) answers any number of questions about one clip with one pruning setting.
`Session` is the interface every caller is typed against. `SessionBase` holds what every session shares: the
question counters, the conversation under history, and the AnswerResult of an answer with the clip's cost counted
once. `PrunedSession` adds what the sessions of methods before the LLM share (LLaVA's ClipSession, Qwen-VL's
QwenSession): the features are pruned once, the prompt prefix with the kept visual tokens is prefilled once and
its KV cache kept, and each question prefills only its own text on it, then the cache is cropped back.

Timings of a result: every stage is counted on the question that paid for it and is 0 on later ones, so that the
stages of a session's results add up to what the session cost: `decode`, `encode` and `cache_load` (what the
ClipFeatures says) and `prune` on the first question, the prefix's prefill on the first or on the one after a
system prompt change. A caller running several sessions on one ClipFeatures gives the later ones
`features.reused()`, so that the clip's cost is counted once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from torch import Tensor

from fpcli.model.clip_features import ClipFeatures
from fpcli.model.generate import Generated, GenerationConfig
from fpcli.model.result import AnswerResult, PrefillTflops, Timings, TokenCounts, visual_stages
from fpcli.model.timing import peak_memory_mb
from fpcli.prune import PruneResult
from fpcli.prune.registry import keep_count

if TYPE_CHECKING:
    from fpcli.model.base import VideoLLM


class Session(Protocol):
    """Questions about one encoded clip with one pruning setting."""

    features: ClipFeatures
    method: str
    ratio: float  # with a budget: the effective ratio, 1 - budget / visual_before
    budget: int | None  # the visual tokens asked for (VideoLLM.start's budget), else None
    questions: int  # questions answered
    prefills: int  # prefills run: prefixes (methods before the LLM) or whole prompts (in-LLM methods)

    @property
    def visual_before(self) -> int:
        """Visual tokens of the clip, before pruning."""

    @property
    def visual_kept(self) -> int:
        """Visual tokens the LLM's last layers run on: those kept before it, or an in-LLM method's budget."""

    @property
    def visual_entering(self) -> int:
        """Visual tokens that enter the LLM: all of them for an in-LLM method, a pre-LLM stage's kept ones."""

    @property
    def in_llm(self) -> bool:
        """Whether the method prunes inside the LLM (every visual token, or a pre-LLM stage's, enters it)."""

    def check_fits(self, question: str, *, time_instruction: bool | None = None,
                   system_prompt: str | None = None) -> None:
        """ModelInputError (exit 2) when the prompt of `question` cannot fit the context; no model work."""

    def ask(self, question: str, generation: GenerationConfig | None = None, *,
            time_instruction: bool | None = None, system_prompt: str | None = None) -> AnswerResult:
        """Answer `question` about the session's clip."""


def rewind(cache, length: int) -> None:
    """Crop every layer of a transformers cache back to its first `length` positions.

    Layer by layer, so that a prefill interrupted between layers (Ctrl-C) is undone as well as a finished one."""
    for layer in cache.layers:
        extra = layer.get_seq_length() - length
        if extra > 0:
            layer.crop(-extra)


class SessionBase:
    """What every session shares: counters, earlier turns under history, and `_finish` (the AnswerResult)."""

    in_llm = False
    budget: int | None = None  # the visual tokens asked for (VideoLLM.start's budget), reported with the ratio

    def __init__(self, llm: VideoLLM, features: ClipFeatures, method: str, ratio: float, history: bool) -> None:
        self.llm = llm
        self.features = features
        self.method = method
        self.ratio = float(ratio)
        self.history = history
        self.questions = 0
        self.prefills = 0
        self.turns: list[tuple[str, str]] = []  # (question, answer) of earlier questions, kept when history=True
        self._clip_reported = False  # the clip's decode, encode and cache load are on a result already

    @property
    def visual_before(self) -> int:
        frames, per_frame = self.features.features.shape[:2]
        return frames * per_frame

    @property
    def visual_kept(self) -> int:
        return keep_count(self.ratio, self.visual_before)

    @property
    def visual_entering(self) -> int:
        return self.visual_before

    def _finish(self, question: str, out: Generated, counts: TokenCounts, timing: Timings, per_frame_kept: list[int],
                tflops_after: float, **extra) -> AnswerResult:
        """The AnswerResult of one answered question (`timing` holds prune and prefill; the rest is added here);
        counts the question and keeps it under history. `extra`: more AnswerResult fields (Qwen-VL's
        temporal_groups). `frames` is the frames sampled, one timestamp each."""
        llm, features = self.llm, self.features
        answer = llm.tokenizer.decode(out.ids, skip_special_tokens=True).strip()
        self.questions += 1
        if self.history:
            self.turns.append((question, answer))
        if not self._clip_reported:
            timing.decode, timing.encode, timing.cache_load = features.decode_s, features.encode_s, features.cache_load_s
            self._clip_reported = True
        timing.generate = out.generate_s
        return AnswerResult(
            video=features.video,
            question=question,
            answer=answer,
            model=llm.name,
            layout=llm.layout,
            method=self.method,
            ratio=self.ratio,
            frames=len(features.timestamps),
            grid=features.grid,
            tokens=counts,
            per_frame_kept=per_frame_kept,
            timestamps=list(features.timestamps),
            timing_s=timing,
            peak_memory_mb=peak_memory_mb(llm.device),
            prefill_tflops=PrefillTflops(
                before=llm.prefill_tflops(counts.text + counts.visual_before + counts.newline),
                after=tflops_after,
            ),
            generated_ids=out.ids,
            warnings=list(features.warnings),
            cache=features.cache,
            budget=self.budget,
            **extra,
        )


class PrunedSession(SessionBase):
    """A session over features pruned once before the LLM, whose prompt prefix (the text before the visual tokens
    and the kept visual tokens) is prefilled once: the family's subclass builds prompts and runs `ask`."""

    def __init__(self, llm: VideoLLM, features: ClipFeatures, pruned: PruneResult, prune_s: float,
                 history: bool) -> None:
        super().__init__(llm, features, pruned.method, pruned.ratio, history)
        self.pruned = pruned
        self._cache = None  # the prefix's KV cache
        self._prefix_ids: Tensor | None = None  # the text ids before the visual tokens that _cache holds
        self._prefix_len = 0  # positions in _cache
        self._unreported_s = {"prune": prune_s, "prefill": 0.0}  # paid, not yet on a result

    @property
    def visual_kept(self) -> int:
        return self.pruned.k

    @property
    def visual_entering(self) -> int:
        return self.pruned.k

    def _result(self, question: str, out: Generated, counts: TokenCounts, prefill_s: float, **extra) -> AnswerResult:
        """The answered question's result: the stages paid since the last result, every layer on the kept tokens
        (one stage of `visual_after`), the TFLOPs of the pruned prompt. `extra`: see Session._finish."""
        counts.visual_in_llm = visual_stages([counts.visual_after])
        timing = Timings(prune=self._unreported_s["prune"], prefill=self._unreported_s["prefill"] + prefill_s)
        self._unreported_s = {"prune": 0.0, "prefill": 0.0}
        return self._finish(question, out, counts, timing, self.pruned.per_frame.tolist(),
                            self.llm.prefill_tflops(counts.prompt), pruned=self.pruned, **extra)
