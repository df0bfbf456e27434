"""`QwenSession`: one pruned clip whose prompt prefix is prefilled once, asked any number of questions.

The prefix is everything up to the video's last <|vision_end|> (system prompt, user turn opening, the kept visual
tokens and Qwen3-VL's timestamps); the question and the assistant turn's opening come after it and take the
positions the full prompt gives them (`get_rope_index` over the whole prompt), so `ask` prefills only that rest on
a copy of the prefix cache and answers token for token as a fresh `QwenVideoLLM.answer`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from fpcli.model.errors import ModelError, ModelInputError
from fpcli.model.flops import prefill_tflops
from fpcli.model.generate import GenerationConfig
from fpcli.model.qwen.features import QwenClipFeatures
from fpcli.model.qwen.generate import decode, prefill
from fpcli.model.qwen.positions import QwenInput, full_positions
from fpcli.model.qwen.video_input import VideoGeometry
from fpcli.model.result import AnswerResult, PrefillTflops, Timings, TokenCounts
from fpcli.model.timing import now, peak_memory_mb
from fpcli.prune import PruneResult


def check_fits(length: int, max_new_tokens: int, context: int, detail: str = "") -> None:
    """ModelInputError unless a prompt of `length` tokens and the answer fit the context."""
    if length + max_new_tokens > context:
        raise ModelInputError(
            f"the prompt ({length} tokens after pruning{detail}) plus {max_new_tokens} new tokens exceeds the "
            f"model's context of {context}; use fewer frames (--frames), a lower --max-pixels or a higher --ratio"
        )


@dataclass
class QwenSession:
    llm: object  # the QwenVideoLLM that started it
    features: QwenClipFeatures
    geometry: VideoGeometry
    pruned: PruneResult
    system_prompt: str | None
    seconds_per_group: float | None  # Qwen2.5-VL's second_per_grid_ts
    prefix_ids: torch.Tensor  # LongTensor [P], the unpruned prefix
    prefix_kept: int  # P' columns of the prefix left after pruning (what the cache holds)
    cache: object
    prune_s: float
    prefix_prefill_s: float

    def ask(self, question: str, generation: GenerationConfig | None = None) -> AnswerResult:
        """Answer `question` about the session's clip (prefills only the part after the video)."""
        llm, generation = self.llm, generation or GenerationConfig()
        prompt = llm.prompt(self.features, question, self.geometry, self.system_prompt)
        if not torch.equal(prompt.input_ids[: prompt.prefix_len], self.prefix_ids):
            raise ModelError("the question changed the prompt before the video; start a new session")
        rest = prompt.input_ids[prompt.prefix_len :]  # [R], text only
        length = self.prefix_kept + len(rest)
        check_fits(length, generation.max_new_tokens, llm.context_length)
        positions = full_positions(llm.model, prompt, self.geometry.grid_thw(), self.seconds_per_group)  # [3, L]
        device = llm.device
        with torch.inference_mode():
            embeds = llm.model.get_input_embeddings()(rest.to(device))[None]  # [1, R, D]
        batch = QwenInput(embeds, positions[:, None, prompt.prefix_len :].to(device), int(positions.max()) + 1,
                          None, None)  # fmt: skip
        start = now(device)
        logits, cache = prefill(llm.model, batch, copy.deepcopy(self.cache))
        rest_s = now(device) - start
        out = decode(llm.model, logits, cache, batch.next_position, generation, llm.eos_token_ids())
        feats, geo = self.features, self.geometry
        counts = TokenCounts(visual_before=geo.tokens, visual_after=self.pruned.k, newline=0,
                             text=prompt.text_tokens, prompt=length, generated=len(out.ids))  # fmt: skip
        cfg = llm.config.text_config
        return AnswerResult(
            video=feats.video,
            question=question,
            answer=llm.tokenizer.decode(out.ids, skip_special_tokens=True).strip(),
            model=llm.name,
            layout=llm.layout,
            method=self.pruned.method,
            ratio=float(self.pruned.ratio),
            frames=geo.frames,
            grid=geo.grid,
            tokens=counts,
            per_frame_kept=self.pruned.per_frame.tolist(),
            timestamps=feats.timestamps,
            timing_s=Timings(decode=feats.decode_s, prefill=rest_s + out.prefill_s, generate=out.generate_s),
            peak_memory_mb=peak_memory_mb(device),
            prefill_tflops=PrefillTflops(before=prefill_tflops(cfg, len(prompt.input_ids)),
                                         after=prefill_tflops(cfg, length)),  # fmt: skip
            generated_ids=out.ids,
            temporal_groups=geo.groups,
        )
