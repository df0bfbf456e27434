"""The in-LLM pruning methods: names, options (one source of truth for defaults and ranges), validation, entry point.

    prefill_pruned(model, inputs_embeds, span, ratio=0.9, method="fastv", options={"K": 2}) -> InLLMPrefill

Options are named after the papers' symbols. `validate` checks everything before any model work; out-of-range or
unknown options are a ValueError naming the option.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from torch import Tensor

from fpcli.model.inllm.fastv import FastV
from fpcli.model.inllm.framefusion import FrameFusion
from fpcli.model.inllm.hooks import decoder_layers, run_pruned_prefill
from fpcli.model.inllm.span import InLLMPrefill, VisualSpan
from fpcli.model.inllm.sttm import STTM


@dataclass(frozen=True)
class OptionSpec:
    """One option: its default, type and closed range [low, high] (None: unbounded), and a one-line help."""

    name: str
    default: object
    type: type
    low: float | None
    high: float | None
    help: str

    def check(self, method: str, value: object) -> object:
        numeric = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if self.type is int and not (numeric and float(value).is_integer()):
            raise ValueError(f"option {self.name!r} of {method} must be an integer, got {value!r}")
        if not numeric:
            raise ValueError(f"option {self.name!r} of {method} must be a number, got {value!r}")
        if (self.low is not None and not value >= self.low) or (self.high is not None and not value <= self.high):
            low = "-inf" if self.low is None else self.low
            bounds = f"[{low}, {'inf' if self.high is None else self.high}]"
            raise ValueError(f"option {self.name!r} of {method} must be in {bounds}, got {value!r}")
        return self.type(value)

    def to_dict(self) -> dict:
        return {"name": self.name, "default": self.default, "type": self.type.__name__, "low": self.low,
                "high": self.high, "help": self.help}


_OPTIONS: dict[str, dict[str, OptionSpec]] = {
    "fastv": {
        "K": OptionSpec("K", 2, int, 1, None, "layer from which only the kept visual tokens go on (FastV's K)"),
    },
    "framefusion": {
        "S_threshold": OptionSpec("S_threshold", 0.6, float, -1.0, 1.0,
                                  "cosine similarity to the previous frame's same patch at which tokens merge"),
        "N_threshold": OptionSpec("N_threshold", 0.1, float, 0.0, 1.0,
                                  "merging stops at the first layer that merges less than this share"),
    },
    "sttm": {
        "layer": OptionSpec("layer", 2, int, 0, None, "decoder layer at whose input the tokens are merged"),
        "tau_s": OptionSpec("tau_s", 0.85, float, -1.0, 1.0, "spatial (quadtree) similarity threshold"),
        "tau_t": OptionSpec("tau_t", 0.6, float, -1.0, 1.0, "temporal (cross-frame node) similarity threshold"),
        "root_level": OptionSpec("root_level", 1, int, 0, None, "pyramid level the quadtree starts from (0: 2x2)"),
    },
}

IN_LLM_METHODS: tuple[str, ...] = tuple(_OPTIONS)


def options_of(method: str) -> dict[str, OptionSpec]:
    """The options of an in-LLM method, by name."""
    if method not in _OPTIONS:
        raise ValueError(f"unknown in-LLM method {method!r}; available: {', '.join(IN_LLM_METHODS)}")
    return dict(_OPTIONS[method])


def validate(ratio: float, method: str, **options: object) -> dict[str, object]:
    """Check ratio, method and options; return every option's value (defaults filled in)."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 <= ratio < 1:
        raise ValueError(f"ratio must be a number in [0, 1), got {ratio!r}")
    specs = options_of(method)
    unknown = sorted(set(options) - set(specs))
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} for method {method!r}; accepted options: {', '.join(specs)}")
    return {name: spec.check(method, options.get(name, spec.default)) for name, spec in specs.items()}


def _check_layer(method: str, name: str, value: int, layers: int) -> None:
    if value >= layers:
        raise ValueError(f"option {name!r} of {method} must be below the model's {layers} decoder layers, got {value}")


def prefill_pruned(
    model, inputs_embeds: Tensor, visual: VisualSpan, ratio: float, method: str, options: dict | None = None
) -> InLLMPrefill:
    """Prefill inputs_embeds [1, L, D] (unpruned visual block described by `visual`) with an in-LLM method.

    Returns the last position's logits, a KV cache holding only the surviving tokens, the position id the first
    decoded token takes (L), and the sequence / visual lengths entering every decoder layer.
    """
    values = validate(ratio, method, **(options or {}))
    layers = len(decoder_layers(model))
    ratio = float(ratio)
    if method == "fastv":
        _check_layer(method, "K", values["K"], layers)
        reducer = FastV(ratio, **values)
    elif method == "framefusion":
        patches = visual.grid[0] * visual.grid[1]
        reducer = FrameFusion(ratio, layers=layers, patches=patches, **values)
    else:
        _check_layer(method, "layer", values["layer"], layers)
        reducer = STTM(ratio, grid=visual.grid, **values)
    return run_pruned_prefill(model, inputs_embeds, visual, reducer, method, values)
