"""How a method with a pre-LLM stage and an in-LLM stage spends one budget K over both (HoliTom, FlashVID).

Every method here ends with K = keep_count(ratio, T*N) visual tokens in the LLM. A two-stage method reaches K at
its in-LLM layer: the pre-LLM stage lets more tokens into the first layers, and the in-LLM stage keeps a share of
them, as the authors' code does at its fixed in-LLM ratio:

    final = K,   pre = min(T*N, max(K, round-half-up(K / llm_keep)))

llm_keep is the share of the entering visual tokens the authors keep at their in-LLM layer: HoliTom keeps
round(V * (1 - r)) with r = 0.5 (llm_keep 0.5); FlashVID keeps ceil(V * llm_retention_ratio), 0.3 (0.1 on
Qwen3-VL). The authors state their ratio differently (docs/methods.md): HoliTom's RETAIN_RATIO is the share that
enters the LLM (= pre / (T*N) here), FlashVID's retention_ratio is a FLOPs-equivalent average over the layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from fpcli.prune.registry import keep_count


@dataclass(frozen=True)
class StageBudgets:
    """Visual tokens entering the LLM (`pre`, the pre-LLM stage's k) and kept from the in-LLM layer on (`final`)."""

    pre: int
    final: int


def split_budget(ratio: float, total: int, llm_keep: float) -> StageBudgets:
    """The two stages' budgets for `total` = T*N visual tokens at `ratio`; llm_keep in (0, 1] (see module docs)."""
    if not 0 < llm_keep <= 1:
        raise ValueError(f"llm_keep must be in (0, 1], got {llm_keep}")
    final = keep_count(ratio, total)
    pre = math.floor(final / Fraction(repr(float(llm_keep))) + Fraction(1, 2))
    return StageBudgets(pre=min(total, max(final, pre)), final=final)
