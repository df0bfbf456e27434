"""FrameFusion (Fu et al., 2024; thu-nics/FrameFusion): merge temporally redundant tokens, then prune, inside the LLM.

Cost model (the authors' `_compute_pruning_ratio`): with `cost` = 1 - ratio, the visual tokens entering each of the
n layers, as a fraction of the visual tokens entering layer 0, average to `cost` over the n layers.

At the input of layers 0, 1, ... while merging lasts: every visual token is compared (cosine of hidden states) with
the previous surviving token of the same patch position (y, x), i.e. the same place in the previous frame. Tokens
with similarity >= S_threshold are merged into the run's first token (its hidden state becomes the mean of the
run), the others survive unchanged. If the merged share of this layer is at least the share the cost still allows,
only that many (the most similar) are merged and merging stops. Otherwise the share is recorded, and merging
stops once it falls below N_threshold. At the next layer, the previous layer's last-token attention (mean over
heads) keeps the top visual tokens.

One budget for all methods: the authors' cost model ends below the budget (it averages the visual fraction over the
layers, so the last layers run on fewer than (1 - ratio) of the tokens). Here the method ends with exactly
K = keep_count(ratio, V) visual tokens, V those entering layer 0, by its own scores: merging never goes below K
(where the authors would, only the most similar tokens down to K merge and the method stops there), merging stops
by the second-to-last layer at the latest so that a pruning layer is left, and the pruning keeps the K visual
tokens the last token attends to most instead of the share the cost model leaves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fpcli.lazy import torch
from fpcli.model.inllm.methods.fastv import keep_top_visual
from fpcli.model.inllm.registry import InLLMMethod, register_in_llm
from fpcli.prune.options import OptionSpec
from fpcli.prune.registry import keep_count

if TYPE_CHECKING:
    from torch import Tensor

    from fpcli.model.inllm.hooks import LayerInput


def remaining_sparsity(shares: list[float], cost: float, layers: int) -> float:
    """The pruning share the remaining layers need so that the mean visual fraction over `layers` is `cost`.

    shares[i]: the share of visual tokens removed at layer i's input (relative to those entering it).
    """
    fraction, spent = 1.0, 0.0
    for share in shares:
        fraction *= 1 - share
        spent += fraction
    left = layers - len(shares)
    if left <= 0:
        return 0.0
    allowed = (layers * cost - spent) / (left * fraction)
    return min(1.0, max(0.0, 1 - allowed))


def previous_frame_similarity(hidden: Tensor, visual: Tensor, patches: int) -> tuple[Tensor, Tensor]:
    """Cosine similarity of each visual token with the previous survivor of its patch position.

    hidden: [L, D]; visual: [L] flat visual index (or -1); patches: H*W.
    Returns (order [V]: sequence indices of the visual tokens sorted by (patch, frame), sim [V]: similarity with the
    previous entry of `order` of the same patch, -2 for each patch's first token).
    """
    candidates = (visual >= 0).nonzero()[:, 0]  # [V] ascending sequence index = (t, y, x) order
    patch = visual[candidates] % patches
    order = candidates[torch.sort(patch, stable=True).indices]  # [V] by patch, then frame
    patch = visual[order] % patches
    feats = hidden[order].float()
    sim = torch.nn.functional.cosine_similarity(feats[1:], feats[:-1], dim=-1)  # [V-1]
    sim = torch.where(patch[1:] == patch[:-1], sim, torch.full_like(sim, -2.0))
    return order, torch.cat([sim.new_full((1,), -2.0), sim])


def merge_runs(hidden: Tensor, order: Tensor, merged: Tensor) -> tuple[Tensor, Tensor]:
    """Average each run of merged tokens (in `order`) into the token just before the run.

    hidden: [L, D]; order: [V] sequence indices; merged: [V] bool (never true for a patch's first token).
    Returns (new hidden [L, D], keep [L'] ascending sequence indices of the survivors).
    """
    position = torch.arange(len(order), device=order.device)
    target_pos = torch.where(merged, -1, position).cummax(dim=0).values  # [V] the run's first token
    target = order[target_pos]  # [V] sequence index each token merges into (itself if not merged)
    sums = torch.zeros_like(hidden, dtype=torch.float32).index_add_(0, target, hidden[order].float())
    counts = torch.bincount(target, minlength=hidden.shape[0])  # [L] run sizes (0 for merged-away tokens)
    heads = order[~merged]  # [V'] tokens that absorb their run
    out = hidden.clone()
    out[heads] = (sums[heads] / counts[heads, None]).to(hidden.dtype)
    drop = torch.zeros(hidden.shape[0], dtype=torch.bool, device=hidden.device)
    drop[order[merged]] = True
    return out, (~drop).nonzero()[:, 0]


class FrameFusion:
    def __init__(self, ratio: float, *, layers: int, patches: int, S_threshold: float, N_threshold: float):
        self.ratio = ratio
        self.cost = 1 - ratio
        self.layers = layers
        self.patches = patches
        self.S_threshold = S_threshold
        self.N_threshold = N_threshold
        self.shares: list[float] = []
        self.merging = True
        self.pruning = True
        self.k: int | None = None  # the budget, set from the visual tokens entering layer 0
        self.row: Tensor | None = None

    def reduce(self, step: LayerInput) -> tuple[Tensor, Tensor | None] | None:
        if self.k is None:
            self.k = keep_count(self.ratio, int((step.visual >= 0).sum()))
        if not self.merging and self.pruning and self.row is not None:
            self.pruning = False
            return keep_top_visual(self.row, step.visual, self.k), None
        if self.merging:
            return self._merge(step)
        return None

    def observe(self, step: LayerInput) -> None:
        if not self.merging and self.pruning:
            self.row = step.attention_row()  # pruning happens at the next layer, by this layer's attention

    def _merge(self, step: LayerInput) -> tuple[Tensor, Tensor]:
        hidden = step.hidden[0]  # [L, D]
        order, sim = previous_frame_similarity(hidden, step.visual, self.patches)
        visual = len(order)
        allowed = remaining_sparsity(self.shares, self.cost, self.layers)
        merged = sim >= self.S_threshold  # [V]
        share = int(merged.sum()) / visual
        met = share >= allowed  # the authors' stop: the cost is met by merging alone
        count = int(allowed * visual) if met else int(merged.sum())
        below = visual - count < self.k
        if met or below:  # the most similar tokens (a patch's first token never merges), down to the budget at most
            count = min(count, visual - self.k, int((sim > -2).sum()))
            merged = torch.zeros_like(merged)
            merged[sim.topk(count).indices] = True
            self.merging = False
            self.pruning = visual - count > self.k  # above the budget: the next layer trims it by attention
        else:
            self.shares.append(share)
            # the last layer cannot prune: the one before it is the last that may merge
            self.merging = share >= self.N_threshold and step.index < self.layers - 2
        new_hidden, keep = merge_runs(hidden, order, merged)
        return keep, new_hidden[None]


register_in_llm(InLLMMethod(
    name="framefusion",
    summary="merges tokens similar to the previous frame's same patch at the first layers, then prunes by attention",
    options=(
        OptionSpec("S_threshold", 0.6, float, (-1.0, 1.0),
                   "cosine similarity to the previous frame's same patch at which tokens merge"),
        OptionSpec("N_threshold", 0.1, float, (0.0, 1.0),
                   "merging stops at the first layer that merges less than this share"),
    ),
    layer_options=(),
    build=lambda ratio, plan, **options: FrameFusion(ratio, layers=plan.layers, patches=plan.grid[0] * plan.grid[1],
                                                     **options),
))
