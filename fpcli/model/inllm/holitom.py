"""HoliTom's merging inside the LLM (cokeshao/HoliTom, holitom/modeling_qwen2.py at commit e9b2972).

Layers 0..layer-1 see every token. Layer layer-1's attention row of the last prompt token (mean over heads) ranks
the visual tokens; at the input of `layer` the `keep` highest-ranked ones stay, and every other visual token is
merged into the kept one its hidden state is most similar to (cosine). The authors merge one token at a time, in
sequence order, each time replacing the kept state h by (h + merged) / 2; a kept token with members m_1 < ... < m_c
therefore ends as h / 2^c + sum_r m_r / 2^(c - r + 1). Here those weights are computed at once (float32), so the
result is that sequence of halvings without the per-token loop. Text and newline tokens are always kept.

`keep` is the exact number of visual tokens from `layer` on: the authors keep round(V * (1 - r)), r = 0.5 (their
HOLITOM_r); fpcli.prune.two_stage.split_budget chooses the pre-LLM budget so that this keep is K.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fpcli.model.inllm.hooks import LayerInput
from fpcli.prune.options import OptionSpec

# The authors' scripts for LLaVA-OneVision/LLaVA-Video 7B (28 layers): HOLITOM_k=18, HOLITOM_r=0.5.
LAYER = OptionSpec("layer", 18, int, (1, 2**63), "decoder layer at whose input the visual tokens are merged "
                   "(HoliTom's HOLITOM_k; ranked by the layer before)", high_open=True)
LLM_KEEP = OptionSpec("llm_keep", 0.5, float, (0.0, 1.0), "share of the entering visual tokens kept at that layer "
                      "(1 - HoliTom's HOLITOM_r)", low_open=True)
OPTIONS = (LAYER, LLM_KEEP)


def halving_merge(hidden: Tensor, kept: Tensor, merged: Tensor) -> Tensor:
    """hidden [L, D] with each kept row replaced by its sequence of pairwise averages with the merged rows.

    kept [K] and merged [M] are ascending row indices; each merged row joins its most similar kept row (cosine,
    ties to the lower kept index).
    """
    x = hidden.float()
    similarity = F.normalize(x[merged], dim=-1) @ F.normalize(x[kept], dim=-1).T  # [M, K]
    target = similarity.argmax(dim=1)  # [M]
    count = torch.bincount(target, minlength=len(kept))  # [K] members per kept token
    # A member's place among its target's members, in sequence order: members are ascending, so a stable sort by
    # target lists each target's members in order.
    order = target.sort(stable=True).indices
    first = count.cumsum(0) - count  # [K]
    place = torch.empty_like(order)
    place[order] = torch.arange(len(order), device=order.device) - first[target[order]]
    weight = torch.pow(2.0, -(count[target] - place).float())  # [M]: 2^-(c - r), r = 0-based place
    out = x.clone()
    out[kept] = x[kept] * torch.pow(2.0, -count.float())[:, None]
    out.index_add_(0, kept[target], x[merged] * weight[:, None])
    return out.to(hidden.dtype)


class HoliTomMerge:
    """Reducer: at `layer`, keep `keep` visual tokens by the previous layer's attention and merge the others in."""

    def __init__(self, keep: int, *, layer: int):
        self.keep = keep
        self.layer = layer
        self.row: Tensor | None = None

    def reduce(self, step: LayerInput) -> tuple[Tensor, Tensor] | None:
        if step.index != self.layer:
            return None
        is_visual = step.visual >= 0  # [L]
        candidates = is_visual.nonzero()[:, 0]  # [V]
        top = candidates[self.row[candidates].topk(min(self.keep, len(candidates))).indices]
        stays = ~is_visual
        stays[top] = True
        kept = top.sort().values
        merged = (is_visual & ~stays).nonzero()[:, 0]
        hidden = step.hidden[0] if len(merged) == 0 else halving_merge(step.hidden[0], kept, merged)
        return stays.nonzero()[:, 0], hidden[None]

    def observe(self, step: LayerInput) -> None:
        if step.index == self.layer - 1:
            self.row = step.attention_row()
