"""The in-LLM methods' registry: each method declares itself in its own file of fpcli.model.inllm.methods.

    register_in_llm(InLLMMethod(
        name="fastv",
        summary="drops the visual tokens the last prompt token attends to least, from layer K on",
        options=(OptionSpec("K", 2, int, (1, UNBOUNDED), "layer from which ...", high_open=True),),
        layer_options=("K",),            # checked against the loaded LLM's decoder layers
        build=lambda ratio, plan, K: FastV(keep_count(ratio, plan.frames * plan.grid[0] * plan.grid[1]), K=K),
    ))

`build(ratio, plan, **options)` returns the method's Reducer (fpcli.model.inllm.hooks) for one prefill. The
registry and the declarations are torch-free (the method files use fpcli.lazy's torch), so the CLI lists and checks
these methods, options named after the papers' symbols and checked by fpcli.prune's `OptionSpec` rules, before
importing torch. The method files are found by listing the methods package: adding a method is adding one file.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from fpcli.prune.options import OptionSpec
from fpcli.prune.registry import check_ratio

if TYPE_CHECKING:
    from fpcli.model.inllm.hooks import Reducer

UNBOUNDED = 2**63  # an int option's open upper end; layer indices are checked against the loaded model
_PACKAGE = "fpcli.model.inllm.methods"


@dataclass(frozen=True)
class InLLMPlan:
    """What a reducer is built for: the LLM's decoder layers and the clip's visual grid."""

    layers: int
    frames: int
    grid: tuple[int, int]


@dataclass(frozen=True)
class InLLMMethod:
    name: str
    summary: str  # one line: what it does, where it prunes (`forestprune methods`)
    options: tuple[OptionSpec, ...]
    layer_options: tuple[str, ...]  # options that name a decoder layer
    build: Callable[..., Reducer]  # build(ratio, plan: InLLMPlan, **options) -> a Reducer for one prefill
    # A two-stage method (HoliTom, FlashVID): the in-LLM stage of the pre-LLM method of the same name (fpcli.prune),
    # which first keeps pre_budget(ratio, total, **options) of the `total` visual tokens; None: every token enters.
    pre_budget: Callable[..., int] | None = None


_METHODS: dict[str, InLLMMethod] = {}
_discovered = False


def register_in_llm(method: InLLMMethod) -> InLLMMethod:
    """Add `method` under its name (once); its layer options must be among its options."""
    if method.name in _METHODS:
        raise ValueError(f"in-LLM method {method.name!r} is already registered")
    names = [spec.name for spec in method.options]
    missing = [name for name in method.layer_options if name not in names]
    if missing:
        raise ValueError(f"layer option {missing[0]!r} of {method.name!r} is not one of its options")
    _METHODS[method.name] = method
    return method


def in_llm_methods() -> dict[str, InLLMMethod]:
    """Every registered in-LLM method (and in-LLM stage of a two-stage method) by name, in name order (whichever
    file was imported first)."""
    global _discovered
    if not _discovered:
        package = importlib.import_module(_PACKAGE)
        for module in sorted(info.name for info in pkgutil.iter_modules(package.__path__)):
            importlib.import_module(f"{_PACKAGE}.{module}")
        _discovered = True
    return {name: _METHODS[name] for name in sorted(_METHODS)}


def method_of(name: str) -> InLLMMethod:
    methods = in_llm_methods()
    if name not in methods:
        raise ValueError(f"unknown in-LLM method {name!r}; available: {', '.join(methods)}")
    return methods[name]


def options_of(name: str) -> dict[str, OptionSpec]:
    """The options of an in-LLM method, by name, in declaration order."""
    return {spec.name: spec for spec in method_of(name).options}


def validate(ratio: float, name: str, **options: Any) -> dict[str, Any]:
    """Check ratio, method and options as fpcli.prune.validate does; return every option's value (defaults filled
    in). ValueError naming the argument."""
    check_ratio(ratio)
    specs = options_of(name)
    unknown = [option for option in options if option not in specs]
    if unknown:
        accepted = ", ".join(specs)
        raise ValueError(f"unknown option {unknown[0]!r} for method {name!r}; accepted options: {accepted}")
    return {option: spec.check(options[option]) if option in options else spec.default
            for option, spec in specs.items()}


def check_layers(name: str, values: dict[str, Any], layers: int) -> None:
    """ValueError when a validated option of `name` names a decoder layer an LLM of `layers` layers lacks."""
    for option in method_of(name).layer_options:
        if values[option] >= layers:
            raise ValueError(f"option {option!r} of {name} must be below the model's {layers} decoder layers, "
                             f"got {values[option]}")
