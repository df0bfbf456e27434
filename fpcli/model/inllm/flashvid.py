"""FlashVID's pruning inside the LLM (Fanziyang-v/FlashVID, `fastv_prune` in flashvid/utils.py, commit 1d37422).

FastV-style: layer `layer`-1's attention row of the last prompt token (mean over heads) ranks the visual tokens,
and from `layer` on only the `keep` highest-ranked ones go on, with all text and newline tokens, at their original
positions. The authors keep ceil(V * llm_retention_ratio) of the V visual tokens that entered the LLM
(llm_retention_ratio 0.3 at pruning_layer 20; 0.1 at layer 28 on Qwen3-VL's 36 layers);
fpcli.prune.two_stage.split_budget chooses the pre-LLM budget so that this keep is exactly K.
"""

from __future__ import annotations

from torch import Tensor

from fpcli.model.inllm.fastv import keep_top_visual
from fpcli.model.inllm.hooks import LayerInput
from fpcli.prune.options import OptionSpec

# flashvid/__init__.py and scripts/{llava_ov,llava_vid,qwen2_5_vl}.sh: pruning_layer=20, llm_retention_ratio=0.3;
# scripts/qwen3_vl.sh: 28 and 0.1.
LAYER = OptionSpec("layer", 20, int, (1, 2**63), "decoder layer from which only the kept visual tokens go on "
                   "(FlashVID's pruning_layer; Qwen3-VL: 28)", high_open=True)
LLM_KEEP = OptionSpec("llm_keep", 0.3, float, (0.0, 1.0), "share of the entering visual tokens kept at that layer "
                      "(FlashVID's llm_retention_ratio; Qwen3-VL: 0.1)", low_open=True)
OPTIONS = (LAYER, LLM_KEEP)


class FlashVIDPrune:
    """Reducer: at `layer`, keep the `keep` visual tokens the previous layer's last token attended to most."""

    def __init__(self, keep: int, *, layer: int):
        self.keep = keep
        self.layer = layer
        self.row: Tensor | None = None

    def reduce(self, step: LayerInput) -> tuple[Tensor, None] | None:
        if step.index != self.layer:
            return None
        return keep_top_visual(self.row, step.visual, min(self.keep, int((step.visual >= 0).sum()))), None

    def observe(self, step: LayerInput) -> None:
        if step.index == self.layer - 1:
            self.row = step.attention_row()
