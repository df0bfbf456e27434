"""The Qwen-VL prompt of one video question, as the checkpoint's processor writes it, as token ids.

The chat template renders a `{"type": "video"}` part as `<|vision_start|><|video_pad|><|vision_end|>`; the processor
then expands it, and so do we, in text, before tokenising the whole prompt once (what the processor does):
  qwen2.5-vl  <|vision_start|> <|video_pad|> x T'*h*w <|vision_end|>
  qwen3-vl    per temporal group: "<{t:.1f} seconds>" <|vision_start|> <|video_pad|> x h*w <|vision_end|>
The timestamps stay for every group whatever pruning keeps: they are text, and they tell the model when each
(possibly empty) group was.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fpcli.model.errors import ModelError
from fpcli.model.qwen.arch import QwenArch
from fpcli.model.qwen.video_input import VideoGeometry


@dataclass
class QwenPrompt:
    input_ids: Tensor  # LongTensor [L], the unpruned prompt with every video token
    video_mask: Tensor  # BoolTensor [L], True at the T'*h*w video tokens, in (group, row, col) order
    prefix_len: int  # tokens up to the video's last <|vision_end|>: what does not depend on the question

    @property
    def text_tokens(self) -> int:
        return int((~self.video_mask).sum())


def _token(tokenizer, token_id: int) -> str:
    return tokenizer.convert_ids_to_tokens(int(token_id))


def build_prompt(
    tokenizer,
    config,
    arch: QwenArch,
    question: str,
    geo: VideoGeometry,
    group_times: list[float],
    system_prompt: str | None = None,
) -> QwenPrompt:
    """Render, expand and tokenise the prompt (cheap: runs before any encoding, so its length can be checked)."""
    start, pad, end = (_token(tokenizer, i) for i in
                       (config.vision_start_token_id, config.video_token_id, config.vision_end_token_id))  # fmt: skip
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    if system_prompt is not None:
        messages.insert(0, {"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    placeholder = f"{start}{pad}{end}"
    if text.count(placeholder) != 1 or question not in text:
        raise ModelError(f"the chat template must render the video as {placeholder} exactly once and the question")
    per_group = geo.grid[0] * geo.grid[1]
    if arch.timestamps_in_text:
        video = "".join(f"<{t:.1f} seconds>{start}{pad * per_group}{end}" for t in group_times)
    else:
        video = f"{start}{pad * (geo.groups * per_group)}{end}"
    ids = tokenizer(text.replace(placeholder, video), add_special_tokens=False, return_tensors="pt").input_ids[0]
    mask = ids == config.video_token_id
    if int(mask.sum()) != geo.tokens:
        raise ModelError(
            f"the question must not contain the video token {pad} (the prompt has {int(mask.sum())} of them, "
            f"the video {geo.tokens})"
        )
    return QwenPrompt(input_ids=ids, video_mask=mask, prefix_len=int(mask.nonzero()[-1, 0]) + 2)


def token_types(prompt: QwenPrompt) -> Tensor:
    """mm_token_type_ids [1, L]: 0 text, 2 video, what `get_rope_index` groups the sequence by."""
    return (prompt.video_mask.to(torch.int32) * 2)[None]
