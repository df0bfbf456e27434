"""One catalogue of the pruning methods a `VideoLLM` runs: before the LLM (fpcli.prune's registry, methods
registered in Python included) and inside it (fpcli.model.inllm: fastv, framefusion, sttm).

The CLI and eval list, check and describe methods only through these functions, so `--method`, `--compare`,
`--opt` and help texts know every method. Torch-free, like both registries it joins.
"""

from __future__ import annotations

from fpcli.model.inllm.options import IN_LLM_METHODS
from fpcli.model.inllm.options import options_of as _in_llm_options
from fpcli.model.inllm.options import validate as _in_llm_validate
from fpcli.prune import available_methods
from fpcli.prune import options_of as _prune_options
from fpcli.prune import validate as _prune_validate
from fpcli.prune.builtin import BUILTIN
from fpcli.prune.options import OptionSpec


def method_names() -> list[str]:
    """Every method: the pre-LLM ones in the prune registry's order, then the in-LLM ones."""
    return [*available_methods(), *IN_LLM_METHODS]


def is_in_llm(method: str) -> bool:
    """Whether `method` prunes inside the LLM (every visual token enters it) rather than before it."""
    return method in IN_LLM_METHODS


def _check_known(method: object) -> None:
    if not isinstance(method, str) or method not in method_names():
        raise ValueError(f"unknown method {method!r}; available: {', '.join(method_names())}")


def options_of(method: str) -> dict[str, OptionSpec]:
    """The options `method` takes (name -> spec, in declaration order); ValueError for an unknown method."""
    _check_known(method)
    return _in_llm_options(method) if is_in_llm(method) else _prune_options(method)


def validate_method(ratio: float, method: str, **options: object) -> dict[str, object]:
    """Check a ratio, a method and its options without any tensor; the method's complete options (defaults
    filled in), or ValueError naming the bad argument and what is allowed."""
    _check_known(method)
    check = _in_llm_validate if is_in_llm(method) else _prune_validate
    return check(ratio, method, **options)


def ratio_for(method: str, ratio: float) -> float:
    """The ratio `method` runs at beside methods pruning at `ratio`: 0 for a method that keeps every token (none),
    the unpruned baseline of a comparison; `ratio` for every other."""
    return 0.0 if method in BUILTIN and BUILTIN[method].keeps_all else ratio
