"""HoliTom's merging inside the LLM (cokeshao/HoliTom, holitom/modeling_qwen2.py at commit e9b2972).

Layers 0..layer-1 see every token. Layer layer-1's attention row of the last prompt token (mean over heads) ranks
the visual tokens; at the input of `layer` the `keep` highest-ranked ones stay, and every other visual token is
merged into the kept one its hidden state is most similar to (cosine, ties to the lower index). The authors merge
one token at a time, in sequence order, each time replacing the kept state h by (h + merged) / 2; a kept token with
members m_1 < ... < m_c therefore ends as h / 2^c + sum_r m_r / 2^(c - r + 1). Here those weights are computed at
once (float32), which is that sequence of halvings without the per-token loop. Text and newline tokens stay.

`keep` is K = keep_count(ratio, T*H*W) of the whole clip, whatever entered the LLM: after HoliTom's pre-LLM stage
(fpcli.prune.holitom at the budget fpcli.prune.two_stage.split_budget gives) the LLM runs on exactly K visual tokens
from `layer` on. The authors keep round(V * (1 - r)) of the V entering, r = 0.5 (HOLITOM_r): `llm_keep` = 1 - r
is the share split_budget divides K by.

The stage registers under the pre-LLM method's name with `pre_budget`: the catalogue (fpcli.model.methods) makes
"holitom" one two-stage method, pruned before the LLM at that budget, then here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fpcli.lazy import torch
from fpcli.model.inllm.registry import UNBOUNDED, InLLMMethod, register_in_llm
from fpcli.prune.options import OptionSpec
from fpcli.prune.registry import keep_count
from fpcli.prune.two_stage import split_budget

if TYPE_CHECKING:
    from torch import Tensor

    from fpcli.model.inllm.hooks import LayerInput


def halving_merge(hidden: Tensor, kept: Tensor, merged: Tensor) -> Tensor:
    """hidden [L, D] with each kept row replaced by its sequence of pairwise averages with the merged rows.

    kept [K] and merged [M] are ascending row indices; each merged row joins its most similar kept row (cosine,
    ties to the lower kept index).
    """
    normalize = torch.nn.functional.normalize
    x = hidden.float()
    similarity = normalize(x[merged], dim=-1) @ normalize(x[kept], dim=-1).T  # [M, K]
    target = similarity.argmax(dim=1)  # [M]
    count = torch.bincount(target, minlength=len(kept))  # [K] members per kept token
    # A member's place among its target's members in sequence order: members are ascending, so a stable sort by
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
        merged = (is_visual & ~stays).nonzero()[:, 0]
        hidden = step.hidden[0] if len(merged) == 0 else halving_merge(step.hidden[0], top.sort().values, merged)
        return stays.nonzero()[:, 0], hidden[None]

    def observe(self, step: LayerInput) -> None:
        if step.index == self.layer - 1:
            self.row = step.attention_row()


STAGE = register_in_llm(InLLMMethod(
    name="holitom",
    summary="merges the visual tokens the last prompt token attends to least into the most similar kept ones",
    options=(
        # The authors' scripts for LLaVA-OneVision/LLaVA-Video 7B (28 layers): HOLITOM_k=18, HOLITOM_r=0.5.
        OptionSpec("layer", 18, int, (1, UNBOUNDED), "decoder layer at whose input the visual tokens are merged "
                   "(HoliTom's HOLITOM_k; ranked by the layer before)", high_open=True),
        OptionSpec("llm_keep", 0.5, float, (0.0, 1.0), "share of the entering visual tokens kept at that layer "
                   "(1 - HoliTom's HOLITOM_r)", low_open=True),
    ),
    layer_options=("layer",),
    build=lambda ratio, plan, layer, llm_keep: HoliTomMerge(
        keep_count(ratio, plan.frames * plan.grid[0] * plan.grid[1]), layer=layer),
    pre_budget=lambda ratio, total, layer, llm_keep: split_budget(ratio, total, llm_keep).pre,
))
