"""The pruning entry point `prune()` and the registry its methods plug into.

A method is one function registered under a name:

    @register_method("mine")
    def select(features, grid, k, *, strength=1.0) -> Selection: ...

It receives the validated features [T, N, D], the grid (H, W) and the exact number of
tokens to keep, and returns a `Selection` of k unique flat indices (frame*N + row*W + col).
Its keyword-only parameters are its options: `prune(..., strength=2.0)` reaches it, and an
option it does not declare is rejected with a ValueError before it is called. `options_of(name)`
lists them as `OptionSpec`s (declared with `register_method(name, options=...)`, else typed by
their defaults) and `validate(ratio, name, **options)` checks a call without any tensor.
A keyword-only parameter named after a vision-tower extra (`fpcli.prune.extras.VISION_EXTRAS`,
e.g. `vision_attention`) is not an option: prune() fills it from its `extras=` argument, and
options_of/validate never list or require it. A merging method returns the features of its kept
positions too (`Selection.features`).
The built-in methods are declared in fpcli.prune.builtin, so listing and validating them imports
no torch; their modules load when they first prune.
`prune()` owns everything the methods share: argument checks, the token budget K, the
contract check on what the method returned, sorting and the per-frame counts.
"""

from __future__ import annotations

import importlib
import inspect
import math
import numbers
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from fpcli.prune.builtin import BUILTIN
from fpcli.prune.extras import VISION_EXTRAS, method_extras, sorted_merged_features
from fpcli.prune.options import OptionSpec

if TYPE_CHECKING:  # forest.py registers a method itself, so importing it here would be circular
    import torch
    from torch import Tensor

    from fpcli.prune.forest import Forest

__all__ = [
    "PruneResult",
    "Selection",
    "available_methods",
    "budget_ratio",
    "check_ratio",
    "extras_of",
    "implementation",
    "keep_count",
    "options_of",
    "prune",
    "register_method",
    "validate",
]


@dataclass
class Selection:
    """What a method returns: k unique flat token indices (any order) and, optionally, its forest and the
    merged features of those positions (row i belongs to keep[i]; None: the input features are kept as they are)
    and, from a merging method, the kept token each dropped token was merged into."""

    keep: Tensor  # LongTensor [k]
    forest: Forest | None = None
    features: Tensor | None = None  # [k, D], the input's dtype and device
    merged_into: Tensor | None = None  # LongTensor [T*N]: kept flat index a dropped token joined; -1 none or kept


@dataclass
class PruneResult:
    """The outcome of `prune()`: which visual tokens survive and how they spread over the frames."""

    keep: Tensor  # LongTensor [K], ascending unique flat indices frame*N + row*W + col
    per_frame: Tensor  # LongTensor [T], kept tokens per frame, sums to K
    method: str
    ratio: float
    k: int
    forest: Forest | None = None
    features: Tensor | None = None  # [K, D] merged features in the order of `keep`; None: features[keep] as is
    merged_into: Tensor | None = None  # LongTensor [T*N], as Selection.merged_into; None: nothing merged


SelectFn = Callable[..., Selection]


@dataclass(frozen=True)
class _Method:
    fn: SelectFn | None  # None: a built-in whose module is not imported yet
    options: dict[str, OptionSpec]  # keyword-only parameters but the extras, in declaration order
    any_options: bool  # the function takes **options and checks those itself
    keeps_all: bool = False  # only ratio 0 (method none)
    module: str | None = None  # a built-in's implementing module
    extras: tuple[str, ...] = ()  # vision-tower extras it takes as keyword-only parameters


_METHODS: dict[str, _Method] = {
    name: _Method(None, {spec.name: spec for spec in entry.options}, False, entry.keeps_all, entry.module,
                  entry.extras)
    for name, entry in BUILTIN.items()
}


def _specs_of(
    fn: SelectFn, declared: Sequence[OptionSpec] | None
) -> tuple[dict[str, OptionSpec], bool, tuple[str, ...]]:
    """(option specs, takes **options, extras) of `fn`. Its keyword-only parameters named in VISION_EXTRAS are
    its extras; the others are its options: as declared (they must name exactly those parameters), else one per
    parameter, typed by its default (bool, int, float, str) and without a range."""
    params = inspect.signature(fn).parameters.values()
    keyword = [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    extras = tuple(p.name for p in keyword if p.name in VISION_EXTRAS)
    keyword = [p for p in keyword if p.name not in VISION_EXTRAS]
    any_options = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    if declared is not None:
        names = [spec.name for spec in declared]
        if names != [p.name for p in keyword]:
            raise ValueError(f"options {names} must be the keyword-only parameters of {fn.__name__}, in order")
        return {spec.name: spec for spec in declared}, any_options, extras
    specs = {}
    for p in keyword:
        default = None if p.default is inspect.Parameter.empty else p.default
        kind = type(default) if type(default) in (bool, int, float, str) else None
        specs[p.name] = OptionSpec(p.name, default, kind)
    return specs, any_options, extras


def register_method(name: str, *, options: Sequence[OptionSpec] | None = None) -> Callable[[SelectFn], SelectFn]:
    """Register `fn(features, grid, k, *, option=default, ...) -> Selection` under `name`.

    The keyword-only parameters are the method's options; `options` may declare their types, ranges and help
    (`OptionSpec`), otherwise each is typed by its default. Registering a name twice is an error (a silent
    replacement would change what `method="name"` means depending on import order).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"method name must be a non-empty string, got {name!r}")

    def decorator(fn: SelectFn) -> SelectFn:
        entry = _METHODS.get(name)
        builtin = entry is not None and entry.fn is None and fn.__module__ == entry.module
        if entry is not None and not builtin:
            raise ValueError(f"method {name!r} is already registered")
        if builtin:  # its options and extras are declared in fpcli.prune.builtin
            _, _, extras = _specs_of(fn, tuple(entry.options.values()))
            if extras != entry.extras:
                raise ValueError(f"{fn.__name__} takes the extras {extras}, fpcli.prune.builtin declares {entry.extras}")
            _METHODS[name] = replace(entry, fn=fn)
        else:
            specs, any_options, extras = _specs_of(fn, options)
            _METHODS[name] = _Method(fn, specs, any_options, extras=extras)
        return fn

    return decorator


def available_methods() -> list[str]:
    """Names of the registered methods: the built-in ones in their order, then those registered later."""
    return list(_METHODS)


def _entry(method: object) -> _Method:
    if not isinstance(method, str) or method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; available: {', '.join(_METHODS)}")
    return _METHODS[method]


def options_of(method: str) -> dict[str, OptionSpec]:
    """The options `method` takes (name -> spec, in declaration order); ValueError for an unknown method."""
    return dict(_entry(method).options)


def extras_of(method: str) -> tuple[str, ...]:
    """The vision-tower extras `method` needs (fpcli.prune.extras), without importing a built-in's module."""
    return _entry(method).extras


def validate(ratio: float, method: str, **options: object) -> dict[str, object]:
    """Check a ratio, a method and its options without any tensor, exactly as `prune()` does.

    Returns the method's complete options: the given ones, typed and range-checked, and the defaults of the others.
    Raises ValueError naming the argument and what is allowed. Shape-free: `none` keeps every token, so only
    ratio 0 is valid for it (whatever the video's size).
    """
    ratio = check_ratio(ratio)
    entry = _entry(method)
    unknown = [name for name in options if name not in entry.options]
    if unknown and not entry.any_options:
        accepted = f"accepted options: {', '.join(entry.options)}" if entry.options else "it takes no options"
        raise ValueError(f"unknown option {unknown[0]!r} for method {method!r}; {accepted}")
    if entry.keeps_all and ratio != 0:
        raise ValueError(f"method {method!r} keeps every token; ratio must be 0")
    checked = {name: spec.check(options[name]) if name in options else spec.default
               for name, spec in entry.options.items()}
    return {**options, **checked}


def implementation(method: str) -> SelectFn:
    """The function of a registered method, importing a built-in's module on first use."""
    entry = _entry(method)
    if entry.fn is None:
        importlib.import_module(entry.module)
    fn = _METHODS[method].fn
    if fn is None:
        raise RuntimeError(f"{entry.module} does not register the method {method!r}")
    return fn


def keep_count(ratio: float, total: int) -> int:
    """K = max(1, round-half-up((1 - ratio) * total)), computed exactly.

    The ratio is taken at its shortest decimal form (the value the user typed: 0.9 is 9/10,
    not the binary float just below it), so the product is exact and halves round up:
    keeping half of 5 tokens keeps 3, keeping 10% of 5 keeps 1 (0.5 rounds up).
    """
    kept = (1 - Fraction(repr(float(ratio)))) * total
    return max(1, math.floor(kept + Fraction(1, 2)))


def budget_ratio(budget: object, total: int) -> float:
    """The ratio a budget of `budget` visual tokens out of `total` amounts to, 1 - budget / total, or ValueError.

    What is reported for a run given a budget; the pruning itself keeps exactly `budget` (prune(budget=)), and
    keep_count of this ratio gives it back (the float's error times total is far below the 0.5 that rounding needs).
    """
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral) or budget < 1:
        raise ValueError(f"budget must be an int >= 1, got {budget!r}")
    if budget > total:
        raise ValueError(f"the budget of {budget} visual tokens exceeds the {total} there are")
    return 1 - int(budget) / total


def _check_features(features: object) -> None:
    import torch
    from torch import Tensor

    if not isinstance(features, Tensor):
        raise ValueError(f"features must be a torch.Tensor of shape [T, N, D], got {type(features).__name__}")
    if not features.is_floating_point():
        raise ValueError(f"features must have a floating dtype, got {features.dtype}")
    if features.dim() != 3:
        raise ValueError(f"features must have shape [T, N, D], got {list(features.shape)}")
    if min(features.shape) < 1:
        raise ValueError(f"features must have T, N, D >= 1, got {list(features.shape)}")
    low, high = features.aminmax()  # NaN propagates; a reduction, unlike isfinite(), allocates nothing big
    if not bool(torch.isfinite(low) & torch.isfinite(high)):
        raise ValueError("features must be finite, got NaN or inf values")


def _check_grid(grid: object, n: int) -> tuple[int, int]:
    ok = (
        isinstance(grid, (tuple, list))
        and len(grid) == 2
        and all(isinstance(g, numbers.Integral) and not isinstance(g, bool) and g >= 1 for g in grid)
    )
    if not ok:
        raise ValueError(f"grid must be a pair of positive ints (H, W), got {grid!r}")
    h, w = int(grid[0]), int(grid[1])
    if h * w != n:
        raise ValueError(f"grid (H, W) = ({h}, {w}) must satisfy H*W == N = {n}, got H*W = {h * w}")
    return h, w


def check_ratio(ratio: object) -> float:
    """`ratio` as a float, or ValueError: the one rule for a pruning ratio (0 <= ratio < 1)."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise ValueError(f"ratio must be a number in [0, 1), got {ratio!r}")
    if not 0 <= ratio < 1:  # also rejects NaN
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    return float(ratio)


def _check_selection(selection: object, method: str, k: int, total: int, device: torch.device) -> Tensor:
    """A method that breaks its contract is a bug in that method, not a user error: RuntimeError."""
    import torch
    from torch import Tensor

    if not isinstance(selection, Selection):
        raise RuntimeError(f"method {method!r} returned {type(selection).__name__}, expected Selection")
    keep = selection.keep
    if not isinstance(keep, Tensor) or keep.dtype != torch.long or keep.shape != (k,) or keep.device != device:
        got = f"{keep.dtype} {list(keep.shape)} on {keep.device}" if isinstance(keep, Tensor) else type(keep).__name__
        raise RuntimeError(f"method {method!r} must return a LongTensor [{k}] on {device}, got {got}")
    keep = keep.sort().values  # [K]
    valid = (keep[0] >= 0) & (keep[-1] < total) & (keep[1:] > keep[:-1]).all()
    if not bool(valid):  # a host sync, like the finiteness check: the only two prune() makes
        raise RuntimeError(f"method {method!r} returned indices that are not unique and in [0, {total})")
    return keep


def _check_merged_into(selection: Selection, method: str, keep: Tensor, total: int) -> Tensor | None:
    """A method's `merged_into` [T*N]: -1, or a kept index for a token that is not kept itself; else RuntimeError."""
    import torch
    from torch import Tensor

    merged = selection.merged_into
    if merged is None:
        return None
    if not isinstance(merged, Tensor) or merged.dtype != torch.long or merged.shape != (total,):
        got = f"{merged.dtype} {list(merged.shape)}" if isinstance(merged, Tensor) else type(merged).__name__
        raise RuntimeError(f"method {method!r} must return merged_into as a LongTensor [{total}], got {got}")
    kept = torch.zeros(total, dtype=torch.bool, device=keep.device)  # [T*N]
    kept[keep] = True
    joined = merged >= 0  # [T*N]
    in_range = bool(((merged >= -1) & (merged < total)).all())
    if not in_range or not bool((kept[merged.clamp(min=0)] | ~joined).all()) or bool((joined & kept).any()):
        raise RuntimeError(f"method {method!r} returned merged_into entries that are not -1 or a kept index")
    return merged


def prune(
    features: Tensor,
    grid: tuple[int, int],
    ratio: float | None = None,
    method: str = "forestprune",
    *,
    budget: int | None = None,
    extras: Mapping[str, Tensor] | None = None,
    **options: object,
) -> PruneResult:
    """Select which visual tokens of a video to keep.

    features: [T, N, D] floating tensor on any device (all work stays there), N = H*W.
    grid: (H, W), the token grid of each frame; flat index = frame*N + row*W + col.
    ratio: fraction of tokens removed, 0 <= ratio < 1; K = `keep_count(ratio, T*N)` tokens are
        kept (round half up, at least 1).
    budget: instead of ratio, K itself (1 <= K <= T*N), kept exactly; the result's ratio is 1 - K / (T*N).
    method: a name from `available_methods()`; options are that method's keyword-only parameters.
    extras: the vision tower's per-token side outputs (`VISION_EXTRAS`, e.g. ClipFeatures.extras); a method
        gets those it declares, the others are ignored; one it declares and that is missing is a ValueError.

    Raises ValueError naming the argument and its allowed values for any invalid input.
    """
    import torch

    from fpcli.prune.threads import prune_threads

    _check_features(features)
    t, n, _ = features.shape
    grid = _check_grid(grid, n)
    if (ratio is None) == (budget is None):
        raise ValueError("give ratio or budget, not both and not neither")
    ratio = check_ratio(ratio) if budget is None else budget_ratio(budget, t * n)
    options = validate(ratio, method, **options)
    fn = implementation(method)
    inputs = method_extras(method, _METHODS[method].extras, extras, features)
    k = keep_count(ratio, t * n) if budget is None else int(budget)
    with prune_threads(features.device):  # small tensor work: one thread on CPU (fpcli.prune.threads)
        selection = fn(features, grid, k, **inputs, **options)
    keep = _check_selection(selection, method, k, t * n, features.device)
    merged = sorted_merged_features(selection, method, features)
    merged_into = _check_merged_into(selection, method, keep, t * n)
    per_frame = torch.bincount(keep // n, minlength=t)  # [T]
    return PruneResult(
        keep=keep, per_frame=per_frame, method=method, ratio=ratio, k=k, forest=selection.forest, features=merged,
        merged_into=merged_into,
    )
