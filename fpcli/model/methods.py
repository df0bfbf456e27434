"""One catalogue of the pruning methods a `VideoLLM` runs: before the LLM (fpcli.prune's registry, methods
registered in Python included) and inside it (fpcli.model.inllm's registry: fastv, framefusion, sttm, ...).

The CLI and eval list, check and describe methods only through these functions, so `--method`, `--compare`,
`--opt` and help texts know every method. Torch-free, like both registries it joins; `check_for_layout` says from
the layout alone (known before anything loads) whether a family can run a method.
"""

from __future__ import annotations

from fpcli.model.inllm import registry as in_llm
from fpcli.model.profiles import LAYOUT_EXTRAS
from fpcli.prune import available_methods
from fpcli.prune import options_of as _prune_options
from fpcli.prune import validate as _prune_validate
from fpcli.prune.builtin import BUILTIN
from fpcli.prune.extras import VISION_EXTRAS
from fpcli.prune.options import OptionSpec
from fpcli.prune.registry import extras_of


def method_names() -> list[str]:
    """Every method: the pre-LLM ones in the prune registry's order, then the in-LLM ones."""
    return [*available_methods(), *in_llm.in_llm_methods()]


def is_in_llm(method: str) -> bool:
    """Whether `method` prunes inside the LLM (every visual token enters it) rather than before it."""
    return method in in_llm.in_llm_methods()


def _check_known(method: object) -> None:
    if not isinstance(method, str) or method not in method_names():
        raise ValueError(f"unknown method {method!r}; available: {', '.join(method_names())}")


def options_of(method: str) -> dict[str, OptionSpec]:
    """The options `method` takes (name -> spec, in declaration order); ValueError for an unknown method."""
    _check_known(method)
    return in_llm.options_of(method) if is_in_llm(method) else _prune_options(method)


def validate_method(ratio: float, method: str, **options: object) -> dict[str, object]:
    """Check a ratio, a method and its options without any tensor; the method's complete options (defaults
    filled in), or ValueError naming the bad argument and what is allowed."""
    _check_known(method)
    check = in_llm.validate if is_in_llm(method) else _prune_validate
    return check(ratio, method, **options)


def check_layers(method: str, values: dict, layers: int) -> None:
    """ValueError when an option of the in-LLM `method` names a decoder layer an LLM of `layers` layers lacks."""
    in_llm.check_layers(method, values, layers)


def check_for_layout(method: str, layout: str) -> None:
    """ValueError when the family of `layout` cannot run `method`: a method needing a vision-tower extra
    (fpcli.prune.extras) that the layout's encoder does not make. (The in-LLM hooks run on every family.)"""
    _check_known(method)
    if is_in_llm(method):
        return
    missing = [name for name in extras_of(method) if name in VISION_EXTRAS and name not in LAYOUT_EXTRAS[layout]]
    if missing:
        raise ValueError(f"{method} needs the vision tower's {missing[0].replace('_', ' ')}, which the {layout} "
                         f"layout's encoder does not provide")


def ratio_for(method: str, ratio: float) -> float:
    """The ratio `method` runs at beside methods pruning at `ratio`: 0 for a method that keeps every token (none),
    the unpruned baseline of a comparison; `ratio` for every other."""
    return 0.0 if method in BUILTIN and BUILTIN[method].keeps_all else ratio


def pruning_for(method: str, ratio: float | None, budget: int | None) -> tuple[float | None, int | None]:
    """(ratio, budget) `method` runs at beside methods pruning at `ratio` or keeping `budget` visual tokens:
    (0, None) for a method that keeps every token (none), the given pair for every other."""
    return (0.0, None) if method in BUILTIN and BUILTIN[method].keeps_all else (ratio, budget)
