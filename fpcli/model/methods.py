"""One catalogue of the pruning methods a `VideoLLM` runs: before the LLM (fpcli.prune's registry, methods
registered in Python included), inside it (fpcli.model.inllm's registry: fastv, framefusion, sttm, ...), and both
(a two-stage method: a pre-LLM method whose name the in-LLM registry also holds, with its in-LLM stage: holitom,
flashvid).

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
    """Every method once: the pre-LLM ones (two-stage ones among them) in the prune registry's order, then the
    in-LLM ones."""
    before = available_methods()
    return [*before, *(name for name in in_llm.in_llm_methods() if name not in before)]


def in_llm_stage(method: str) -> in_llm.InLLMMethod | None:
    """The part of `method` that acts inside the LLM (the whole of an in-LLM method), or None."""
    return in_llm.in_llm_methods().get(method)


def is_in_llm(method: str) -> bool:
    """Whether `method` prunes inside the LLM only: every visual token enters it."""
    stage = in_llm_stage(method)
    return stage is not None and stage.pre_budget is None


def is_two_stage(method: str) -> bool:
    """Whether `method` prunes before the LLM and again inside it."""
    stage = in_llm_stage(method)
    return stage is not None and stage.pre_budget is not None


def kind_of(method: str) -> str:
    """"before the LLM", "inside the LLM" or "before and inside the LLM"."""
    _check_known(method)
    return "inside the LLM" if is_in_llm(method) else "before and inside the LLM" if is_two_stage(method) else \
        "before the LLM"


def _check_known(method: object) -> None:
    if not isinstance(method, str) or method not in method_names():
        raise ValueError(f"unknown method {method!r}; available: {', '.join(method_names())}")


def options_of(method: str) -> dict[str, OptionSpec]:
    """The options `method` takes (name -> spec, in declaration order; a two-stage method's pre-LLM ones first);
    ValueError for an unknown method."""
    _check_known(method)
    if is_in_llm(method):
        return in_llm.options_of(method)
    if is_two_stage(method):
        return {**_prune_options(method), **in_llm.options_of(method)}
    return _prune_options(method)


def split_options(method: str, values: dict[str, object]) -> tuple[dict[str, object], dict[str, object]]:
    """A two-stage method's option values: (its pre-LLM stage's, its in-LLM stage's)."""
    stage = in_llm.options_of(method)
    return ({k: v for k, v in values.items() if k not in stage}, {k: v for k, v in values.items() if k in stage})


def validate_method(ratio: float, method: str, **options: object) -> dict[str, object]:
    """Check a ratio, a method and its options without any tensor; the method's complete options (defaults
    filled in), or ValueError naming the bad argument and what is allowed."""
    _check_known(method)
    if is_in_llm(method):
        return in_llm.validate(ratio, method, **options)
    if not is_two_stage(method):
        return _prune_validate(ratio, method, **options)
    accepted = options_of(method)
    unknown = [name for name in options if name not in accepted]
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} for method {method!r}; accepted options: "
                         f"{', '.join(accepted)}")
    before, inside = split_options(method, dict(options))
    return {**_prune_validate(ratio, method, **before), **in_llm.validate(ratio, method, **inside)}


def check_layers(method: str, values: dict, layers: int) -> None:
    """ValueError when an option of `method`'s in-LLM stage names a decoder layer an LLM of `layers` lacks."""
    if in_llm_stage(method) is not None:
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
