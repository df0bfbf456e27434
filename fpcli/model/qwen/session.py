"""`QwenSession`: one pruned Qwen-VL clip whose prompt prefix is prefilled once, asked any number of questions.

A `PrunedSession` (counters, cache rewind, stage accounting and the AnswerResult are its), with Qwen-VL's prompt: the
prefix is everything up to the video's last <|vision_end|> (system prompt, user turn opening, the kept visual tokens
and Qwen3-VL's timestamps), prefilled with the kept columns' M-RoPE positions (and Qwen3-VL's DeepStack features of
the kept tokens); the question and the assistant opening come after it at the positions `get_rope_index` gives the
whole unpruned prompt, so `ask` prefills only that rest on the cached prefix, decodes from the unpruned prompt's
next position, and answers token for token as a fresh `QwenVideoLLM.answer`. A question with another system prompt
prefills its prefix first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from fpcli.model.clip_features import ClipFeatures
from fpcli.model.errors import ModelInputError
from fpcli.model.generate import GenerationConfig, decode, prefill
from fpcli.model.oom import out_of_memory_is_model_error
from fpcli.model.qwen.positions import assemble, full_positions, kept_columns
from fpcli.model.qwen.prompt import QwenPrompt
from fpcli.model.qwen.video_input import VideoGeometry
from fpcli.model.result import AnswerResult, TokenCounts
from fpcli.model.session import PrunedSession, rewind
from fpcli.model.timing import now, reset_peak_memory
from fpcli.prune import PruneResult

if TYPE_CHECKING:
    from torch import Tensor

    from fpcli.model.qwen.model import QwenVideoLLM


def check_fits(length: int, max_new_tokens: int, context: int, detail: str = "") -> None:
    """ModelInputError unless a prompt of `length` tokens and the answer fit the context."""
    if length + max_new_tokens > context:
        raise ModelInputError(
            f"the prompt ({length} tokens after pruning{detail}) plus {max_new_tokens} new tokens exceeds the "
            f"model's context of {context}",
            hint="use fewer frames (--frames), a lower --max-pixels or a higher --ratio",
        )


class QwenSession(PrunedSession):
    """Questions about one Qwen-VL clip pruned once (`QwenVideoLLM.start` makes it)."""

    def __init__(self, llm: QwenVideoLLM, features: ClipFeatures, pruned: PruneResult, prune_s: float,
                 geometry: VideoGeometry, seconds_per_group: float | None) -> None:
        super().__init__(llm, features, pruned, prune_s, history=False)
        self.geometry = geometry
        self.seconds_per_group = seconds_per_group  # Qwen2.5-VL's second_per_grid_ts; None for Qwen3-VL

    def check_fits(self, question: str, *, time_instruction: bool | None = None,
                   system_prompt: str | None = None) -> None:
        """Nothing to do before `ask`: it builds the question's prompt and checks it (with the answer's length)."""

    def _prefill_qwen_prefix(self, prompt: QwenPrompt, positions: Tensor) -> None:
        """Prefill the kept columns up to the video's end; the cache then holds exactly them."""
        self._cache, self._prefix_ids = None, None  # free the old prefix before building the next
        llm, features = self.llm, self.features
        start = now(llm.device)
        batch = assemble(llm.model.get_input_embeddings(), prompt, positions, features.features, self.pruned.keep,
                         features.extras.get("deepstack"), self.pruned.features)  # fmt: skip
        kept = int(kept_columns(prompt, self.pruned.keep)[: prompt.prefix_len].sum())  # every kept video token
        deepstack = {}
        if batch.deepstack is not None:
            deepstack = {"visual_pos_masks": batch.visual_pos_masks[:, :kept],
                         "deepstack_visual_embeds": batch.deepstack}
        _, cache = prefill(llm.lm, batch.inputs_embeds[:, :kept], position_ids=batch.position_ids[..., :kept],
                           **deepstack)  # fmt: skip
        self._unreported_s["prefill"] += now(llm.device) - start
        self._cache, self._prefix_ids, self._prefix_len = cache, prompt.input_ids[: prompt.prefix_len], kept
        self.prefills += 1

    def ask(self, question: str, generation: GenerationConfig | None = None, *, time_instruction: bool | None = None,
            system_prompt: str | None = None) -> AnswerResult:
        """Answer `question` about the session's clip (prefills only the part after the video).

        time_instruction: LLaVA-Video's, so only None or False; system_prompt: None keeps the chat template's."""
        llm, features, geo = self.llm, self.features, self.geometry
        generation = generation or GenerationConfig()
        prompt = llm.prompt(features, question, geo, system_prompt, time_instruction)
        rest = prompt.input_ids[prompt.prefix_len :]  # [R], text only
        length = prompt.text_tokens + self.pruned.k
        check_fits(length, generation.max_new_tokens, llm.context_length)
        if self.questions:  # the first question's window is the caller's (answer() opens it before encoding)
            reset_peak_memory(llm.device)
        positions = full_positions(llm.model, prompt, geo.grid_thw(), self.seconds_per_group)  # [3, L]
        with out_of_memory_is_model_error("answering a question about", geo.frames):
            prefix = prompt.input_ids[: prompt.prefix_len]
            if self._prefix_ids is None or not torch.equal(prefix, self._prefix_ids):
                self._prefill_qwen_prefix(prompt, positions)
            try:
                start = now(llm.device)
                rest_positions = positions[:, None, prompt.prefix_len :].to(llm.device)  # [3, 1, R]
                logits, cache = prefill(llm.lm, llm.embed(rest)[None], cache=self._cache, position_ids=rest_positions)
                prefill_s = now(llm.device) - start
                out = decode(llm.lm, logits, cache, generation, llm.eos_token_ids(),
                             next_position=int(positions.max()) + 1)  # fmt: skip
            finally:
                rewind(self._cache, self._prefix_len)
        counts = TokenCounts(visual_before=geo.tokens, visual_after=self.pruned.k, newline=0,
                             text=prompt.text_tokens, prompt=length, generated=len(out.ids))  # fmt: skip
        return self._result(question, out, counts, prefill_s, temporal_groups=geo.groups)
