"""Where the visual tokens sit in the LLM input, and what an in-LLM prefill reports."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

LAYOUTS = ("onevision", "video")


@dataclass(frozen=True)
class VisualSpan:
    """The visual block of one prompt: `frames` x grid (H, W) tokens starting at sequence index `start`, every one
    of them, or those a pre-LLM stage kept (`keep`, ascending flat indices t*H*W + y*W + x).

    layout "onevision": the tokens then one newline; "video": per frame, per row, that row's tokens then a newline
    (fpcli.model.llava.sequence.visual_sequence). Newlines are structure, not candidates: every method keeps them,
    like text.
    """

    start: int
    frames: int
    grid: tuple[int, int]
    layout: str
    keep: Tensor | None = field(default=None, compare=False)  # [K]; None: all T*H*W

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.start < 0 or self.frames < 1 or min(self.grid) < 1:
            raise ValueError(f"invalid visual span: start {self.start}, frames {self.frames}, grid {self.grid}")

    @property
    def tokens(self) -> int:
        """Visual tokens (without newlines): T*H*W, or the kept ones."""
        return self.frames * self.grid[0] * self.grid[1] if self.keep is None else len(self.keep)

    @property
    def length(self) -> int:
        """Sequence positions the block occupies, newlines included."""
        rows = self.frames * self.grid[0]
        return self.tokens + (1 if self.layout == "onevision" else rows)

    def flat(self, device: torch.device | str = "cpu") -> Tensor:
        """The flat index t*H*W + y*W + x of each visual token in sequence order: LongTensor [tokens]."""
        return torch.arange(self.tokens, device=device) if self.keep is None else self.keep.to(device)

    def token_positions(self, device: torch.device | str = "cpu") -> Tensor:
        """Sequence index of every visual token, in (t, y, x) order: LongTensor [tokens]."""
        order = torch.arange(self.tokens, device=device)
        if self.layout == "onevision":
            return self.start + order
        return self.start + order + self.flat(device) // self.grid[1]  # one newline after each earlier row

    def visual_index(self, seq_len: int, device: torch.device | str = "cpu") -> Tensor:
        """For each of `seq_len` positions its flat visual index t*H*W + y*W + x, or -1: LongTensor [seq_len]."""
        if self.start + self.length > seq_len:
            raise ValueError(f"visual span [{self.start}, {self.start + self.length}) exceeds the {seq_len} tokens")
        index = torch.full((seq_len,), -1, dtype=torch.long, device=device)
        index[self.token_positions(device)] = self.flat(device)
        return index


@dataclass
class InLLMPrefill:
    """One pruned prefill: the next-token logits, a KV cache holding only the survivors, and what each layer saw."""

    last_logits: Tensor  # [1, V]
    cache: object  # transformers Cache; every layer holds the same surviving tokens
    next_position: int  # position id of the first decoded token (the unpruned prompt length)
    kept_positions: Tensor  # [L'] ascending original sequence indices (= position ids) of the final survivors
    visual_before: int  # visual tokens entering the LLM (before any reduction)
    layer_lengths: list[int]  # tokens each decoder layer runs on (after that layer's reduction)
    visual_lengths: list[int]  # visual tokens each decoder layer runs on
    prefill_tflops: float  # analytic, from layer_lengths (fpcli.model.flops.prefill_flops_per_layer)
    method: str
    options: dict = field(default_factory=dict)
    prune_s: float = 0.0  # of the prefill's time, what the method's hooks took (device-synchronised)

    @property
    def kept_visual(self) -> int:
        """Visual tokens after the last reduction (entering the last layer, and in the KV cache)."""
        return self.visual_lengths[-1]

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "options": dict(self.options),
            "next_position": self.next_position,
            "layer_lengths": list(self.layer_lengths),
            "visual_lengths": list(self.visual_lengths),
            "visual_before": self.visual_before,
            "kept_visual": self.kept_visual,
            "prefill_tflops": self.prefill_tflops,
            "prune_s": self.prune_s,
        }
