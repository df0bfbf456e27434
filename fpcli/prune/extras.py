"""What a pruning method may take besides the pooled features (vision-tower extras) and give back (merged features).

Extras are per-token side outputs of the vision tower, pooled to the grid exactly like the features, so that
token t*N + i of an extra describes token t*N + i of the features. A method asks for one by declaring a
keyword-only parameter of that name; `prune(..., extras=...)` hands it over after checking its shape here.
Torch is imported only when a check runs, so the registry (which imports this) stays torch-free to list methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:  # registry.py imports this module
    from torch import Tensor

    from fpcli.prune.registry import Selection

# name -> shape, in the dimensions of the features [T, N, D]; the model layer produces exactly these.
VISION_EXTRAS: dict[str, tuple[str, ...]] = {
    "vision_attention": ("T", "N"),  # attention each pooled token receives in the feature layer (heads, queries mean)
    "vision_keys": ("T", "N", "Dk"),  # that layer's keys, mean over heads, pooled
}


def method_extras(
    method: str, names: tuple[str, ...], extras: Mapping[str, Tensor] | None, features: Tensor
) -> dict[str, Tensor]:
    """The extras `method` declares, taken from `extras` and checked against features [T, N, D]."""
    import torch
    from torch import Tensor

    given = extras or {}
    t, n, _ = features.shape
    chosen = {}
    for name in names:
        if name not in given:
            have = ", ".join(sorted(given)) or "none"
            raise ValueError(
                f"method {method!r} needs the vision-tower extra {name!r} (pass extras= from the encoding, "
                f"e.g. ClipFeatures.extras); got: {have}"
            )
        value = given[name]
        dims = VISION_EXTRAS[name]
        ok = (
            isinstance(value, Tensor)
            and value.is_floating_point()
            and value.dim() == len(dims)
            and tuple(value.shape[:2]) == (t, n)
            and value.device == features.device
        )
        if not ok:
            got = f"{value.dtype} {list(value.shape)} on {value.device}" if isinstance(value, Tensor) else repr(value)
            raise ValueError(
                f"extra {name!r} must be a floating tensor [{', '.join(dims)}] with T, N = {t}, {n} on "
                f"{features.device}, got {got}"
            )
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"extra {name!r} must be finite, got NaN or inf values")
        chosen[name] = value
    return chosen


def sorted_merged_features(selection: Selection, method: str, features: Tensor) -> Tensor | None:
    """The method's merged features [K, D] reordered like its sorted `keep`; None when it merged nothing.

    A method that returns features of the wrong shape, dtype or device breaks its contract: RuntimeError.
    """
    from torch import Tensor

    merged = selection.features
    if merged is None:
        return None
    k, dim = len(selection.keep), features.shape[-1]
    ok = (
        isinstance(merged, Tensor)
        and merged.shape == (k, dim)
        and merged.dtype == features.dtype
        and merged.device == features.device
    )
    if not ok:
        got = f"{merged.dtype} {list(merged.shape)} on {merged.device}" if isinstance(merged, Tensor) else type(merged)
        raise RuntimeError(
            f"method {method!r} must return features {features.dtype} [{k}, {dim}] on {features.device}, got {got}"
        )
    return merged.index_select(0, selection.keep.argsort())  # [K, D], row i belongs to the i-th smallest kept index
