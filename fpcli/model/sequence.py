"""The LLM input: prompt text from the chat template, and the kept visual tokens laid out as the model was trained.

Layouts (after pruning, kept tokens always in (frame, row, col) order):
  onevision  [kept tokens] [newline]                       one newline embedding after the whole video
  video      per frame, per row: [kept tokens of the row] [newline]   T*H newlines, also for rows with no kept
             token, as LLaVA-NeXT's `add_token_per_grid` lays out the unpruned grid.
The user turn is "<video>\\n{question}"; LLaVA-Video's reference evaluation (lmms-eval `llava_vid`) puts its time
instruction between the video and the question, with the same wording and number formatting.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from fpcli.model.errors import ModelError

# What LLaVA's "qwen_1_5" conversation renders; used only for a tokenizer that ships no chat template.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def time_instruction(duration: float, timestamps: Sequence[float]) -> str:
    """LLaVA-Video's time instruction, character for character as lmms-eval's llava_vid writes it."""
    frame_time = ",".join(f"{t:.2f}s" for t in timestamps)
    return (
        f"The video lasts for {duration:.2f} seconds, and {len(timestamps)} frames are uniformly sampled from it. "
        f"These frames are located at {frame_time}.Please answer the following questions related to this video."
    )


def user_text(layout: str, question: str, video_token: str, duration: float, timestamps: Sequence[float]) -> str:
    """The user turn: video placeholder, (time instruction for the video layout), question."""
    if layout == "video":
        return f"{video_token}\n{time_instruction(duration, timestamps)}\n{question}"
    return f"{video_token}\n{question}"


def render_prompt(tokenizer, text: str, video_token: str) -> str:
    """The full prompt string from the tokenizer's chat template, ending with the assistant turn's opening."""
    template = getattr(tokenizer, "chat_template", None) or CHATML_TEMPLATE
    messages = [{"role": "user", "content": text}]
    prompt = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)
    if text in prompt:
        return prompt
    # A processor-style template (content as a list of typed parts) drops plain-string content; use its form.
    rest = text.removeprefix(f"{video_token}\n")
    parts = [{"type": "video"}, {"type": "text", "text": rest}]
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": parts}], chat_template=template, tokenize=False, add_generation_prompt=True
    )
    if rest not in prompt or prompt.count(video_token) != 1:
        raise ModelError("the tokenizer's chat template does not render a video and a question; check the checkpoint")
    return prompt


def visual_sequence(
    features: Tensor,
    keep: Tensor,
    grid: tuple[int, int],
    newline: Tensor,
    layout: str,
    kept_features: Tensor | None = None,
) -> tuple[Tensor, int]:
    """Kept tokens plus the layout's newlines: ([K + n_newline, D], n_newline).

    features: [T, N, D] pooled features; keep: LongTensor [K] ascending flat indices frame*N + row*W + col;
    kept_features: [K, D] what a merging method made of those positions (PruneResult.features), used instead of
    features[keep] when given.
    """
    frames, tokens, dim = features.shape
    kept = features.reshape(frames * tokens, dim)[keep] if kept_features is None else kept_features  # [K, D]
    newline = newline.to(device=kept.device, dtype=kept.dtype)
    if layout == "onevision":
        return torch.cat([kept, newline[None]]), 1
    rows = frames * grid[0]
    width = grid[1]
    row_of = keep // width  # [K] global row index frame*H + row, non-decreasing
    # Each token is preceded by one newline per earlier row; row r's newline follows every token of rows <= r.
    token_pos = torch.arange(len(keep), device=kept.device) + row_of
    all_rows = torch.arange(rows, device=kept.device)
    newline_pos = torch.searchsorted(row_of, all_rows, right=True) + all_rows
    out = kept.new_empty(len(keep) + rows, dim)  # [K + T*H, D]
    out[token_pos] = kept
    out[newline_pos] = newline
    return out, rows


def splice(text_embeds: Tensor, video_pos: int, visual: Tensor) -> Tensor:
    """Replace the single video placeholder at `video_pos` of [L, D] by the visual sequence [V, D]."""
    return torch.cat([text_embeds[:video_pos], visual.to(text_embeds.dtype), text_embeds[video_pos + 1 :]])
