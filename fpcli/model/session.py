"""`ClipSession`: many questions about one pruned clip, paying for pruning and the visual tokens' prefill once.

(`Session` is what it shares with fpcli.model.inllm.session's `InLLMSession`, whose methods prune inside the LLM:
the prompt of a question, the conversation under history, the AnswerResult.)

The prompt of a question is   [text before the video placeholder] [visual sequence] [text after the placeholder]
where the first part (chat template, system prompt, user-turn opening) and the visual sequence are the same for
every question: that prefix is prefilled once and its KV cache kept. Each question renders its whole prompt with
the chat template, tokenizes it and splits the ids at the placeholder (the placeholder is a special token, so the
text on either side tokenizes on its own: the ids are those of the parts); only the part after the placeholder (the
time instruction where used, the question, the assistant opening) is prefilled on top of the cached prefix, then
decoded, and the cache is cropped back to the prefix. A question whose prefix differs (another system prompt)
prefills the new prefix first. `VideoLLM.answer` runs exactly this path for a single question, so an answer from
a session is token for token the one a fresh `answer` gives.

Timings of a result: every stage is counted on the question that paid for it and is 0 on later ones, so that the
stages of a session's results add up to what the session cost: `decode`, `encode` and `cache_load` (what the
ClipFeatures says) and `prune` on the first question, the prefix's prefill on the first or on the one after a
system prompt change. A caller running several sessions on one ClipFeatures gives the later ones
`features.reused()`, so that the clip's cost is counted once.
With `history=True` earlier questions and answers stay in the conversation (video in the first user turn); the
whole text after the placeholder, earlier turns included, is prefilled per question.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from fpcli.model.clip_features import ClipFeatures
from fpcli.model.errors import ModelInputError
from fpcli.model.generate import Generated, GenerationConfig, decode, prefill
from fpcli.model.oom import out_of_memory_is_model_error
from fpcli.model.result import AnswerResult, PrefillTflops, Timings, TokenCounts, visual_stages
from fpcli.model.timing import now, peak_memory_mb, reset_peak_memory
from fpcli.prune import PruneResult

if TYPE_CHECKING:
    from fpcli.model.llm import VideoLLM


def rewind(cache, length: int) -> None:
    """Crop every layer of a transformers cache back to its first `length` positions.

    Layer by layer, so that a prefill interrupted between layers (Ctrl-C) is undone as well as a finished one."""
    for layer in cache.layers:
        extra = layer.get_seq_length() - length
        if extra > 0:
            layer.crop(-extra)


class Session:
    """What every session of questions about one encoded clip shares: the prompt of a question (with this
    session's visual sequence), the conversation under history, and the AnswerResult of an answer."""

    def __init__(self, llm: VideoLLM, features: ClipFeatures, method: str, ratio: float, visual: Tensor,
                 newlines: int, history: bool) -> None:
        self.llm = llm
        self.features = features
        self.method = method
        self.ratio = float(ratio)
        self.visual = visual  # [K + newlines, D] the visual sequence in the layout's order
        self.newlines = newlines
        self.history = history
        self.questions = 0
        self.turns: list[tuple[str, str]] = []  # (question, answer) of earlier questions, kept when history=True
        self._clip_reported = False  # the clip's decode, encode and cache load are on a result already

    def prompt_ids(self, question: str, *, time_instruction: bool | None = None,
                   system_prompt: str | None = None) -> tuple[Tensor, int]:
        """The whole prompt's text ids [L_text] (earlier turns included under history) and the placeholder's index."""
        earlier = self.turns if self.history else []
        return self.llm.prompt_ids(
            [q for q, _ in earlier] + [question],
            [a for _, a in earlier],
            self.features.duration,
            self.features.timestamps,
            time_instruction=time_instruction,
            system_prompt=system_prompt,
        )

    def prompt_embeds(self, question: str, *, time_instruction: bool | None = None,
                      system_prompt: str | None = None) -> Tensor:
        """The whole LLM input of `question` as one tensor [1, L, D] (what the cached prefill computes in two parts)."""
        return self.embeds(*self.prompt_ids(question, time_instruction=time_instruction, system_prompt=system_prompt))

    def embeds(self, ids: Tensor, at: int) -> Tensor:
        """Text ids [L_text] with the placeholder at `at` -> the LLM input [1, L, D], this session's visual
        sequence in the placeholder's place."""
        embeds = self.llm.embed(ids)  # [L_text, D]
        return torch.cat([embeds[:at], self.visual.to(embeds.dtype), embeds[at + 1 :]])[None]

    def check_fits(self, question: str, *, time_instruction: bool | None = None,
                   system_prompt: str | None = None) -> None:
        """Raise ModelInputError (exit 2) when the prompt of `question` (earlier turns included under history) with
        this session's visual sequence is longer than the LLM's context; tokenizes only."""
        ids, _ = self.prompt_ids(question, time_instruction=time_instruction, system_prompt=system_prompt)
        text, visual = len(ids) - 1, len(self.visual) - self.newlines
        context = self.llm.config.text_config.max_position_embeddings
        if text + len(self.visual) > context:
            raise ModelInputError(
                f"the prompt needs {text + len(self.visual)} tokens ({text} text, {visual} visual, {self.newlines} "
                f"newline) but {self.llm.name}'s context is {context} tokens",
                hint="shorten the question" + (" or start a new chat: earlier turns count" if self.history else ""),
            )

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
            **extra,
        )


class ClipSession(Session):
    """Questions about one clip pruned once before the LLM (`VideoLLM.start` makes it); `prefills` and `questions`
    count the prefix prefills and the answered questions."""

    def __init__(self, llm: VideoLLM, features: ClipFeatures, pruned: PruneResult, prune_s: float, visual: Tensor,
                 newlines: int, history: bool) -> None:
        super().__init__(llm, features, pruned.method, pruned.ratio, visual, newlines, history)
        self.pruned = pruned
        self.prefills = 0
        self._cache = None  # the prefix's KV cache
        self._prefix_ids: Tensor | None = None  # [P_text] the text ids before the placeholder that _cache holds
        self._prefix_len = 0  # positions in _cache: P_text + len(visual)
        self._unreported_s = {"prune": prune_s, "prefill": 0.0}  # paid, not yet on a result

    def _prefill_prefix(self, prefix_ids: Tensor) -> None:
        self._cache, self._prefix_ids = None, None  # free the old prefix before building the next
        device = self.llm.device
        start = now(device)
        text = self.llm.embed(prefix_ids)  # [P_text, D]
        embeds = torch.cat([text, self.visual.to(text.dtype)])[None]  # [1, P, D]
        _, cache = prefill(self.llm.model, embeds)
        self._unreported_s["prefill"] += now(device) - start
        self._cache, self._prefix_ids, self._prefix_len = cache, prefix_ids, embeds.shape[1]
        self.prefills += 1

    def ask(self, question: str, generation: GenerationConfig, *, time_instruction: bool | None = None,
            system_prompt: str | None = None) -> AnswerResult:
        """Answer `question`: prefill its text after the cached prefix, decode, crop the cache back to the prefix.

        time_instruction: None, the layout's default (LLaVA-Video's time instruction for the video layout only);
        True/False force it. system_prompt: None keeps the chat template's own."""
        llm, features = self.llm, self.features
        ids, at = self.prompt_ids(question, time_instruction=time_instruction, system_prompt=system_prompt)
        if self.questions:  # the first question's window is the caller's (answer() opens it before encoding)
            reset_peak_memory(llm.device)
        with out_of_memory_is_model_error("answering a question about", features.frames):
            if self._prefix_ids is None or not torch.equal(ids[:at], self._prefix_ids):
                self._prefill_prefix(ids[:at])
            try:
                start = now(llm.device)
                logits, cache = prefill(llm.model, llm.embed(ids[at + 1 :])[None], cache=self._cache)
                prefill_s = now(llm.device) - start
                out = decode(llm.model, logits, cache, generation, llm.eos_token_ids())
            finally:
                rewind(self._cache, self._prefix_len)
        frames, per_frame = features.features.shape[:2]
        counts = TokenCounts(
            visual_before=frames * per_frame,
            visual_after=self.pruned.k,
            newline=self.newlines,
            text=len(ids) - 1,
            prompt=len(ids) - 1 + len(self.visual),
            generated=len(out.ids),
        )
        return self._result(question, out, counts, prefill_s)

    def _result(self, question: str, out: Generated, counts: TokenCounts, prefill_s: float, **extra) -> AnswerResult:
        """The answered question's result: the stages paid since the last result, every layer on the kept tokens
        (one stage of `visual_after`), the TFLOPs of the pruned prompt. `extra`: see Session._finish."""
        counts.visual_in_llm = visual_stages([counts.visual_after])
        timing = Timings(prune=self._unreported_s["prune"], prefill=self._unreported_s["prefill"] + prefill_s)
        self._unreported_s = {"prune": 0.0, "prefill": 0.0}
        return self._finish(question, out, counts, timing, self.pruned.per_frame.tolist(),
                            self.llm.prefill_tflops(counts.prompt), pruned=self.pruned, **extra)
