"""VidCom2 (Liu et al., *Video Compression Commander*, EMNLP 2025): frame uniqueness sets each frame's budget.

Scores live in a reduced, normalised feature space: the half of the channels with the lowest variance over all
T*N tokens, each token L2-normalised over them. Against two centres, the video's mean token g and its frame's mean
token c_t, a token's similarity is a sum of Gaussian kernels over five bandwidths

    K(x, c) = sum_{a in 1/8, 1/4, 1/2, 1, 2} exp(-||x - c||^2 / (2a))

1. **Frame budget.** A frame whose tokens are least like the video's mean is the most unique: u_t = -mean_i
   K(x_ti, g). Its share is p = softmax(u / frame_temperature), and its retention base * (1 + p_t - mean(p)), at
   most 1, so the budget moves from common frames to unique ones while the shares still average to `base`. Frame t keeps
   max(1, round(retention_t * N)) tokens (round half to even, torch.round, as the authors' code).
2. **Tokens in a frame.** The tokens with the lowest K(x, g) + K(x, c_t), the most distinct from both the video
   and their own frame, are kept.

Budget: base = k / (T*N), the exact share the ratio keeps (the authors' R_RATIO). The per-frame counts add up to
about k; the difference (rounding, the one-token floor, the cap at 1) is settled by the token score over the whole
video: the kept tokens with the highest score are dropped first, the others with the lowest score are added first,
as vLLM's port does. Ties (equal scores, equal variances) go to the lower index. Authors' code: xuyang-liu16/VidCom2,
token_compressor/vidcom2/vidcom2.py; docs/methods.md lists where this and vLLM's port differ from it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fpcli.prune.registry import Selection, register_method

BANDWIDTHS = (0.125, 0.25, 0.5, 1.0, 2.0)  # a = 2**-3 .. 2**1, the authors' alphas
CHANNEL_SHARE = 0.5  # the lowest-variance half of the channels is scored


def _kernel(distance: Tensor) -> Tensor:
    """sum_a exp(-distance / 2a) of squared distances [T, N] -> [T, N]."""
    return sum(torch.exp(-distance / (2 * a)) for a in BANDWIDTHS)


def vidcom2_scores(features: Tensor) -> tuple[Tensor, Tensor]:
    """(frame uniqueness [T], token score [T, N]; lower = more distinct) of float32 features [T, N, D].

    The normalised tokens u = x / ||x|| (over the chosen channels) are never formed: ||u - c||^2 = ||u||^2 -
    2 (x . c) / ||x|| + ||c||^2, and the centres are weighted sums of x, so every step is a reduction or a product
    over the selected channels (one copy of them)."""
    t, n, d = features.shape
    flat = features.reshape(t * n, d)
    variance = torch.linalg.vector_norm(flat, dim=0).square() / (t * n) - flat.mean(dim=0).square()  # [D]
    channels = variance.sort(stable=True).indices[: max(1, int(d * CHANNEL_SHARE))]  # [C], the calmest half
    x = features.index_select(-1, channels)  # [T, N, C]
    norm = torch.linalg.vector_norm(x, dim=-1)  # [T, N]
    weight = 1 / norm.clamp(min=1e-12)  # [T, N], F.normalize's eps: a zero token stays zero
    unit_square = (norm * weight).square()  # [T, N], 1 (0 for a zero token)
    frame_center = (weight[:, None, :] @ x) / n  # [T, 1, C], mean of the frame's unit tokens
    video_center = frame_center.mean(dim=0)  # [1, C]
    to_video = unit_square - 2 * weight * (x @ video_center.T).squeeze(-1) + video_center.square().sum()  # [T, N]
    to_frame = (unit_square - 2 * weight * (x @ frame_center.transpose(1, 2)).squeeze(-1)
                + frame_center.square().sum(dim=-1))  # [T, N]
    to_video, to_frame = _kernel(to_video.clamp(min=0)), _kernel(to_frame.clamp(min=0))  # similarities [T, N]
    return -to_video.mean(dim=1), to_video + to_frame


def frame_counts(uniqueness: Tensor, base: float, n: int, temperature: float) -> Tensor:
    """Tokens each frame keeps, as the authors' compute_scales and select_outlier_indices: [T] long."""
    share = torch.softmax((uniqueness - uniqueness.max()) / temperature, dim=0)  # [T]
    retention = (base * (1 + share - share.mean())).clamp(max=1.0)  # [T]
    return (retention * n).round().long().clamp(min=1)


@register_method("vidcom2")
def select_vidcom2(features: Tensor, grid: tuple[int, int], k: int, *, frame_temperature: float) -> Selection:
    """Keep k tokens: per-frame budgets from frame uniqueness, the most distinct tokens within each frame.

    frame_temperature (default and range in fpcli.prune.builtin) is checked by the registry before this runs."""
    t, n, _ = features.shape
    uniqueness, score = vidcom2_scores(features.float())
    counts = frame_counts(uniqueness, k / (t * n), n, frame_temperature)  # [T]
    order = score.sort(dim=1, stable=True).indices  # [T, N], most distinct first, ties to the lower index
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(n, device=features.device).expand(t, -1))
    chosen = (rank < counts[:, None]).reshape(-1)  # [T*N], the authors' per-frame selection
    # Exactly k: the chosen tokens first, each group by score, so a surplus loses its least distinct tokens and a
    # shortfall gains the most distinct of the rest.
    by_score = score.reshape(-1).sort(stable=True).indices  # [T*N]
    by_group = by_score[(~chosen[by_score]).to(torch.uint8).sort(stable=True).indices]  # [T*N]
    return Selection(by_group[:k])
