"""Split integer totals over parts in proportion to their sizes, exactly (largest remainder, Hamilton's method).

HoliTom and FlashVID give each group of candidate tokens (a frame, a static window) its share of a budget by a
ratio, rounding each share up or to nearest, so their totals drift from the budget by a few tokens. Here the
shares are floor(total * size / sum of sizes) plus one for the parts with the largest remainders (ties to the
lower part index), so they sum to the total exactly and never exceed a part's size.
"""

from __future__ import annotations

import torch
from torch import Tensor


def apportion(totals: Tensor, sizes: Tensor, part_of: Tensor) -> Tensor:
    """Shares [P] of totals [S] over parts of sizes [P], part p belonging to set part_of[p] (long tensors).

    Each set's shares sum to its total, which must not exceed the sum of its parts' sizes.
    """
    sums = torch.zeros_like(totals).index_add_(0, part_of, sizes)  # [S]
    numerator = totals[part_of] * sizes  # [P]
    denominator = sums[part_of].clamp(min=1)
    base = numerator // denominator  # [P]
    remainder = numerator % denominator
    missing = totals - torch.zeros_like(totals).index_add_(0, part_of, base)  # [S]
    # Order the parts by set, then by remainder (largest first), then by index: a part's rank inside its set.
    order = remainder.sort(descending=True, stable=True).indices
    order = order[part_of[order].sort(stable=True).indices]  # [P]
    first = torch.cumsum(torch.bincount(part_of, minlength=len(totals)), 0) - torch.bincount(part_of,
                                                                                            minlength=len(totals))
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device) - first[part_of[order]]
    return base + (rank < missing[part_of]).long()
