"""The LLM input: prompt text from the chat template, and the kept visual tokens laid out as the model was trained.

Layouts (after pruning, kept tokens always in (frame, row, col) order):
  onevision  [kept tokens] [newline]                       one newline embedding after the whole video
  video      per frame, per row: [kept tokens of the row] [newline]   T*H newlines, also for rows with no kept
             token, as LLaVA-NeXT's `add_token_per_grid` lays out the unpruned grid.
The user turn is "<video>\\n{question}"; LLaVA-Video's reference evaluation (lmms-eval `llava_vid`) puts its time
instruction between the video and the question, with the same wording and number formatting. In a conversation
with history the video stays in the first user turn and later turns are the plain questions.
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


def user_text(
    layout: str,
    question: str,
    video_token: str,
    duration: float,
    timestamps: Sequence[float],
    timed: bool | None = None,
) -> str:
    """The user turn: video placeholder, time instruction, question. `timed` None: the time instruction for the
    video layout only (as LLaVA-Video was trained and evaluated); True or False force it on or off."""
    if timed is None:
        timed = layout == "video"
    if timed:
        return f"{video_token}\n{time_instruction(duration, timestamps)}\n{question}"
    return f"{video_token}\n{question}"


def conversation(turns: Sequence[str], answers: Sequence[str] = (), system_prompt: str | None = None) -> list[dict]:
    """Chat messages: the system prompt (None: the template's own), then user turns[i] and assistant answers[i]
    alternating, ending with the last user turn. turns[0] is the one with the video placeholder."""
    if len(answers) != len(turns) - 1:
        raise ValueError(f"{len(turns)} user turns need {len(turns) - 1} answers, got {len(answers)}")
    messages = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
    for turn, answer in zip(turns, [*answers, None]):
        messages.append({"role": "user", "content": turn})
        if answer is not None:
            messages.append({"role": "assistant", "content": answer})
    return messages


def _typed_parts(content: str, video_token: str) -> list[dict]:
    if content.startswith(f"{video_token}\n"):
        return [{"type": "video"}, {"type": "text", "text": content.removeprefix(f"{video_token}\n")}]
    return [{"type": "text", "text": content}]


def render_prompt(tokenizer, messages: list[dict], video_token: str) -> str:
    """The full prompt string from the tokenizer's chat template, ending with the assistant turn's opening."""
    template = getattr(tokenizer, "chat_template", None) or CHATML_TEMPLATE
    prompt = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)
    if all(message["content"] in prompt for message in messages):
        return prompt
    # A processor-style template (content as a list of typed parts) drops plain-string content; use its form.
    typed = [{"role": m["role"], "content": _typed_parts(m["content"], video_token)} for m in messages]
    prompt = tokenizer.apply_chat_template(typed, chat_template=template, tokenize=False, add_generation_prompt=True)
    last = typed[-1]["content"][-1]["text"]
    if last not in prompt or prompt.count(video_token) != 1:
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
