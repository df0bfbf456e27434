"""FlashVID's pruning inside the LLM (Fanziyang-v/FlashVID, `fastv_prune` in flashvid/utils.py, commit 1d37422).

FastV's reducer: layer `layer`-1's attention row of the last prompt token (mean over heads) ranks the visual tokens,
and from `layer` on only the `keep` highest-ranked ones go on, with all text and newline tokens, at their original
positions. The authors keep ceil(V * llm_retention_ratio) of the V visual tokens that entered the LLM (0.3 at
pruning_layer 20; 0.1 at layer 28 on Qwen3-VL's 36 layers). Here `keep` is K = keep_count(ratio, T*H*W) of the
whole clip: after FlashVID's pre-LLM stage (fpcli.prune.flashvid at the budget fpcli.prune.two_stage.split_budget
gives, K / llm_keep) the LLM runs on exactly K visual tokens from `layer` on.

The stage registers under the pre-LLM method's name with `pre_budget`: the catalogue (fpcli.model.methods) makes
"flashvid" one two-stage method, pruned before the LLM at that budget, then here.
"""

from __future__ import annotations

from fpcli.model.inllm.methods.fastv import FastV
from fpcli.model.inllm.registry import UNBOUNDED, InLLMMethod, register_in_llm
from fpcli.prune.options import OptionSpec
from fpcli.prune.registry import keep_count
from fpcli.prune.two_stage import split_budget

STAGE = register_in_llm(InLLMMethod(
    name="flashvid",
    summary="drops the visual tokens the last prompt token attends to least in the layer before `layer`",
    options=(
        # flashvid/__init__.py and scripts/{llava_ov,llava_vid,qwen2_5_vl}.sh: 20 and 0.3; scripts/qwen3_vl.sh: 28, 0.1.
        OptionSpec("layer", 20, int, (1, UNBOUNDED), "decoder layer from which only the kept visual tokens go on "
                   "(FlashVID's pruning_layer; Qwen3-VL: 28)", high_open=True),
        OptionSpec("llm_keep", 0.3, float, (0.0, 1.0), "share of the entering visual tokens kept at that layer "
                   "(FlashVID's llm_retention_ratio; Qwen3-VL: 0.1)", low_open=True),
    ),
    layer_options=("layer",),
    build=lambda ratio, plan, layer, llm_keep: FastV(keep_count(ratio, plan.frames * plan.grid[0] * plan.grid[1]),
                                                     K=layer),
    pre_budget=lambda ratio, total, layer, llm_keep: split_budget(ratio, total, llm_keep).pre,
))
