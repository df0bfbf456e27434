"""FastV (Chen et al., 2024; pkunlp-icler/FastV): drop visual tokens by the attention they receive, inside the LLM.

Layers 0..K-1 see every token. Layer K-1's attention row of the last prompt token, averaged over heads, ranks the
visual tokens; layer K and every later layer see only the `keep_count(ratio, visual)` highest-ranked ones, plus
all text and newline tokens, with their original position ids. The authors' `fastv_kvcache` path does the same
(rank from layer K-1's `last_layer_attention` mean over heads, last row, top-k of the image span, keep the rest).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fpcli.model.inllm.registry import UNBOUNDED, InLLMMethod, register_in_llm
from fpcli.prune.options import OptionSpec
from fpcli.prune.registry import keep_count

if TYPE_CHECKING:
    from torch import Tensor

    from fpcli.model.inllm.hooks import LayerInput


def keep_top_visual(row: Tensor, visual: Tensor, k: int) -> Tensor:
    """Indices to keep, ascending: every non-visual token and the k visual ones with the highest `row`.

    row: [L] attention the last token pays each position; visual: [L] flat visual index or -1.
    """
    is_visual = visual >= 0  # [L]
    candidates = is_visual.nonzero()[:, 0]  # [V]
    top = candidates[row[candidates].topk(k).indices]  # [k]
    keep = (~is_visual).clone()
    keep[top] = True
    return keep.nonzero()[:, 0]


class FastV:
    """Reducer: at layer K, keep the `keep` visual tokens layer K-1's last token attended to most (FlashVID's
    in-LLM stage is this reducer too)."""

    def __init__(self, keep: int, *, K: int):
        self.keep = keep
        self.K = K
        self.row: Tensor | None = None

    def reduce(self, step: LayerInput) -> tuple[Tensor, None] | None:
        if step.index != self.K:
            return None
        return keep_top_visual(self.row, step.visual, min(self.keep, int((step.visual >= 0).sum()))), None

    def observe(self, step: LayerInput) -> None:
        if step.index == self.K - 1:
            self.row = step.attention_row()


register_in_llm(InLLMMethod(
    name="fastv",
    summary="drops the visual tokens the last prompt token attends to least in layer K-1, from layer K on",
    options=(OptionSpec("K", 2, int, (1, UNBOUNDED), "layer from which only the kept visual tokens go on (FastV's K)",
                        high_open=True),),
    layer_options=("K",),
    build=lambda ratio, plan, K: FastV(keep_count(ratio, plan.frames * plan.grid[0] * plan.grid[1]), K=K),
))
