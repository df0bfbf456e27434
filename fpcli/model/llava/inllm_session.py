"""`InLLMSession`: questions about one clip whose visual tokens are pruned inside the LLM (fastv, framefusion, sttm).

Every visual token enters the LLM and the method drops or merges them at a decoder layer's input, by what the
last prompt token attends to (FastV, FrameFusion) or by the hidden states the question has shaped (STTM); so
nothing of one question's prefill is valid for the next: each question prefills its whole prompt with the
method's hooks (`prefill_pruned`), the encoded features being all that is reused, then decodes on the cache of
the survivors with their original position ids. Results report what the LLM saw: every visual token at layer 0
(`tokens.prompt`), the survivors after the pruning layer (`tokens.visual_after`, `tokens.visual_in_llm` per stage),
the prefill TFLOPs of the real per-layer lengths, and the hooks' own time as `prune` (the rest of the prefill as
`prefill`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from fpcli.model.clip_features import ClipFeatures
from fpcli.model.generate import GenerationConfig, decode
from fpcli.model.inllm.prefill import prefill_pruned
from fpcli.model.inllm.span import VisualSpan
from fpcli.model.llava.session import LlavaPrompt
from fpcli.model.oom import out_of_memory_is_model_error
from fpcli.model.result import AnswerResult, Timings, TokenCounts, visual_stages
from fpcli.model.session import SessionBase
from fpcli.model.timing import now, reset_peak_memory
from fpcli.prune import PruneResult

if TYPE_CHECKING:
    from fpcli.model.llava.model import LlavaVideoLLM


class InLLMSession(LlavaPrompt, SessionBase):
    """Questions about one clip with an in-LLM method, or the in-LLM stage of a two-stage method over the tokens
    its pre-LLM stage kept (`before`, pruned once in `prune_s`, reported on the first answer); `LlavaVideoLLM.start`
    makes it. `prefills` and `questions` count the pruned prefills (one per question) and the answered questions."""

    in_llm = True

    def __init__(self, llm: LlavaVideoLLM, features: ClipFeatures, method: str, ratio: float, options: dict,
                 visual: Tensor, newlines: int, history: bool, before: PruneResult | None = None,
                 prune_s: float = 0.0) -> None:
        super().__init__(llm, features, method, ratio, history)
        self.visual = visual  # [V + newlines, D] the visual tokens entering the LLM in the layout's order
        self.newlines = newlines
        self.options = dict(options)
        self.before = before
        self._unreported_prune_s = prune_s

    @property
    def visual_entering(self) -> int:
        return self.visual_before if self.before is None else self.before.k

    def ask(self, question: str, generation: GenerationConfig | None = None, *,
            time_instruction: bool | None = None, system_prompt: str | None = None) -> AnswerResult:
        """Answer `question`: its whole prompt through the pruned prefill, then decode (see the module docs)."""
        llm, features = self.llm, self.features
        generation = generation or GenerationConfig()
        ids, at = self.prompt_ids(question, time_instruction=time_instruction, system_prompt=system_prompt)
        if self.questions:  # the first question's window is the caller's (answer() opens it before encoding)
            reset_peak_memory(llm.device)
        frames, per_frame = features.features.shape[:2]
        span = VisualSpan(at, frames, features.grid, llm.layout, keep=None if self.before is None else self.before.keep)
        with out_of_memory_is_model_error("answering a question about", frames):
            embeds = self.embeds(ids, at)  # [1, L, D]
            start = now(llm.device)
            pruned = prefill_pruned(llm.model, embeds, span, self.ratio, self.method, self.options)
            prefill_s = now(llm.device) - start
            out = decode(llm.model, pruned.last_logits, pruned.cache, generation, llm.eos_token_ids(),
                         next_position=pruned.next_position)
        self.prefills += 1
        kept = span.visual_index(embeds.shape[1], pruned.kept_positions.device)[pruned.kept_positions]  # [L']
        kept = kept[kept >= 0]  # [K] flat visual indices the last layer runs on, ascending
        per_frame_kept = torch.bincount(kept // per_frame, minlength=frames)  # [T]
        counts = TokenCounts(
            visual_before=frames * per_frame,
            visual_after=pruned.kept_visual,
            newline=self.newlines,
            text=len(ids) - 1,
            prompt=embeds.shape[1],
            generated=len(out.ids),
            visual_in_llm=visual_stages(pruned.visual_lengths),
        )
        timing = Timings(prune=pruned.prune_s + self._unreported_prune_s, prefill=prefill_s - pruned.prune_s)
        self._unreported_prune_s = 0.0
        survivors = PruneResult(keep=kept, per_frame=per_frame_kept, method=self.method, ratio=self.ratio,
                                k=int(kept.numel()))
        return self._finish(question, out, counts, timing, per_frame_kept.tolist(), pruned.prefill_tflops,
                            pruned=survivors)
