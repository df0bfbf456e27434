"""LLaVA's sessions: the prompt of a question with the visual sequence in the placeholder's place, and `ClipSession`,
many questions about one clip pruned once before the LLM.

The prompt of a question is   [text before the video placeholder] [visual sequence] [text after the placeholder]
where the first part (chat template, system prompt, user-turn opening) and the visual sequence are the same for
every question: that prefix is prefilled once and its KV cache kept. Each question renders its whole prompt with
the chat template, tokenizes it and splits the ids at the placeholder (the placeholder is a special token, so the
text on either side tokenizes on its own: the ids are those of the parts); only the part after the placeholder (the
time instruction where used, the question, the assistant opening) is prefilled on top of the cached prefix, then
decoded, and the cache is cropped back to the prefix. A question whose prefix differs (another system prompt)
prefills the new prefix first. `VideoLLM.answer` runs exactly this path for a single question, so an answer from
a session is token for token the one a fresh `answer` gives. With `history=True` earlier questions and answers stay
in the conversation (video in the first user turn); the whole text after the placeholder, earlier turns included,
is prefilled per question.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from fpcli.model.clip_features import ClipFeatures
from fpcli.model.errors import ModelInputError
from fpcli.model.generate import GenerationConfig, decode, prefill
from fpcli.model.oom import out_of_memory_is_model_error
from fpcli.model.result import AnswerResult, TokenCounts
from fpcli.model.session import PrunedSession, rewind
from fpcli.model.timing import now, reset_peak_memory
from fpcli.prune import PruneResult

if TYPE_CHECKING:
    from fpcli.model.llava.model import LlavaVideoLLM


class LlavaPrompt:
    """The prompt of a question in a LLaVA session: `visual` [K + newlines, D] in the layout's order stands in
    for the placeholder (used by ClipSession and the in-LLM InLLMSession)."""

    llm: LlavaVideoLLM
    features: ClipFeatures
    history: bool
    turns: list[tuple[str, str]]
    visual: Tensor
    newlines: int

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


class ClipSession(LlavaPrompt, PrunedSession):
    """Questions about one clip pruned once before the LLM (`LlavaVideoLLM.start` makes it)."""

    def __init__(self, llm: LlavaVideoLLM, features: ClipFeatures, pruned: PruneResult, prune_s: float,
                 visual: Tensor, newlines: int, history: bool) -> None:
        super().__init__(llm, features, pruned, prune_s, history)
        self.visual = visual  # [K + newlines, D] the visual sequence in the layout's order
        self.newlines = newlines

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

    def ask(self, question: str, generation: GenerationConfig | None = None, *,
            time_instruction: bool | None = None, system_prompt: str | None = None) -> AnswerResult:
        """Answer `question`: prefill its text after the cached prefix, decode, crop the cache back to the prefix.

        time_instruction: None, the layout's default (LLaVA-Video's time instruction for the video layout only);
        True/False force it. system_prompt: None keeps the chat template's own."""
        llm, features = self.llm, self.features
        generation = generation or GenerationConfig()
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
