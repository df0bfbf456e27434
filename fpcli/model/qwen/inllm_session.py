"""`QwenInLLMSession`: questions about one Qwen-VL clip whose video tokens are pruned inside the LLM.

LLaVA's `InLLMSession` (fpcli.model.llava.inllm_session) for Qwen-VL prompts: the method ranks or merges by what the question
shaped, so each question prefills its whole unpruned prompt (every video token at its M-RoPE position, Qwen3-VL's
DeepStack features) through `qwen_prefill_pruned`, the encoded features being all that is reused, then decodes
on the cache of the survivors from the unpruned prompt's next position. An answer is token for token what a fresh
`QwenVideoLLM.answer` with the method gives. Results report every video token entering (`tokens.prompt`), the
survivors after the pruning layer (`tokens.visual_after`, `tokens.visual_in_llm` per stage), kept tokens per
temporal group, the prefill TFLOPs of the real per-layer lengths, and the hooks' own time as `prune`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from fpcli.model.clip_features import ClipFeatures
from fpcli.model.generate import GenerationConfig, decode
from fpcli.model.oom import out_of_memory_is_model_error
from fpcli.model.qwen.inllm import in_llm_detail, qwen_prefill_pruned
from fpcli.model.qwen.positions import full_positions
from fpcli.model.qwen.session import check_fits
from fpcli.model.qwen.video_input import VideoGeometry
from fpcli.model.result import AnswerResult, Timings, TokenCounts, visual_stages
from fpcli.model.session import SessionBase
from fpcli.model.timing import now, reset_peak_memory
from fpcli.prune import PruneResult

if TYPE_CHECKING:
    from fpcli.model.qwen.model import QwenVideoLLM


class QwenInLLMSession(SessionBase):
    """Questions about one Qwen-VL clip with an in-LLM method (`QwenVideoLLM.start` makes it); `prefills` and
    `questions` count the pruned prefills (one per question) and the answered questions."""

    in_llm = True

    def __init__(self, llm: QwenVideoLLM, features: ClipFeatures, method: str, ratio: float, options: dict,
                 geometry: VideoGeometry, seconds_per_group: float | None) -> None:
        super().__init__(llm, features, method, ratio, history=False)
        self.options = dict(options)
        self.geometry = geometry
        self.seconds_per_group = seconds_per_group  # Qwen2.5-VL's second_per_grid_ts; None for Qwen3-VL

    def check_fits(self, question: str, *, time_instruction: bool | None = None,
                   system_prompt: str | None = None) -> None:
        """Nothing to do before `ask`: it builds the question's prompt and checks it (with the answer's length)."""

    def ask(self, question: str, generation: GenerationConfig | None = None, *, time_instruction: bool | None = None,
            system_prompt: str | None = None) -> AnswerResult:
        """Answer `question`: its whole prompt through the pruned prefill, then decode (see the module docs).

        time_instruction: LLaVA-Video's, so only None or False; system_prompt: None keeps the chat template's."""
        llm, features, geo = self.llm, self.features, self.geometry
        generation = generation or GenerationConfig()
        prompt = llm.prompt(features, question, geo, system_prompt, time_instruction)
        length = len(prompt.input_ids)  # every video token enters the LLM
        check_fits(length, generation.max_new_tokens, llm.context_length, in_llm_detail(self.method))
        if self.questions:  # the first question's window is the caller's (answer() opens it before encoding)
            reset_peak_memory(llm.device)
        positions = full_positions(llm.model, prompt, geo.grid_thw(), self.seconds_per_group)  # [3, L]
        with out_of_memory_is_model_error("answering a question about", geo.frames):
            start = now(llm.device)
            pruned = qwen_prefill_pruned(llm, features, prompt, positions, self.ratio, self.method, self.options)
            prefill_s = now(llm.device) - start
            out = decode(llm.lm, pruned.last_logits, pruned.cache, generation, llm.eos_token_ids(),
                         next_position=pruned.next_position)  # fmt: skip
        self.prefills += 1
        video_column = torch.cumsum(prompt.video_mask, 0) - 1  # [L] flat visual index at the video columns
        kept = pruned.kept_positions.cpu()
        kept_visual = video_column[kept][prompt.video_mask[kept]]  # [K'] flat indices of the final survivors
        per_group = torch.bincount(kept_visual // (geo.grid[0] * geo.grid[1]), minlength=geo.groups)  # [T']
        counts = TokenCounts(
            visual_before=geo.tokens,
            visual_after=pruned.kept_visual,
            newline=0,
            text=prompt.text_tokens,
            prompt=length,
            generated=len(out.ids),
            visual_in_llm=visual_stages(pruned.visual_lengths),
        )
        timing = Timings(prune=pruned.prune_s, prefill=prefill_s - pruned.prune_s)
        survivors = PruneResult(keep=kept_visual, per_frame=per_group, method=self.method, ratio=self.ratio,
                                k=int(kept_visual.numel()))  # what the deepest layers ran on, for pictures
        return self._finish(question, out, counts, timing, per_group.tolist(), pruned.prefill_tflops,
                            temporal_groups=geo.groups, pruned=survivors)  # fmt: skip
