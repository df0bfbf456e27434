"""The settings a run is made with: `ModelSettings` (what `load_model` gets) and `RunSettings` (per video: pruning,
sampling, generation; a batch item may override them), with their defaults and checks.

The commands build them from their typed parameters (fpcli.cli.settings), never by matching names in click's
ctx.params, so renaming an option is a type error, not a silently dropped value. Pruning is checked by
`fpcli.model.methods.validate_method` (ratio, method, options: the pruning registries' one set of rules, for
methods before and inside the LLM) before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Optional

from fpcli.model.methods import method_names, options_of, pruning_for, ratio_for, validate_method
from fpcli.model.profiles import ATTENTION_NAMES, MAX_PIXELS_CAP
from fpcli.model.sampling import MAX_FRAMES

MIN_NEW_TOKENS = 1
MIN_TEMPERATURE = 0.0
DEFAULT_RATIO = 0.9
DEFAULT_METHOD = "forestprune"
DEFAULT_MAX_NEW_TOKENS = 128
DEFAULT_TEMPERATURE = 0.0
DEFAULT_SEED = 0
DEFAULT_DEVICE = "auto"
MIN_BUDGET = 1
GPU_DEFAULT = "llava-video-7b"
CPU_DEFAULT = "llava-ov-0.5b"


def plain(value: Any) -> Any:
    """An Enum option's value as its string (None stays None)."""
    return value.value if isinstance(value, Enum) else value


@dataclass(frozen=True)
class ModelSettings:
    """What `load_model` gets; `stats` has no --attn and uses sdpa."""

    model: Optional[str]
    layout: Optional[str]
    device: str
    dtype: str
    attn: str = ATTENTION_NAMES[0]

    @classmethod
    def of(cls, model: Optional[str], layout: Any, device: str, dtype: Any, attn: Any = ATTENTION_NAMES[0]
           ) -> ModelSettings:
        """From the typed command parameters (Enum values become their strings)."""
        return cls(model, plain(layout), device, plain(dtype), plain(attn))


@dataclass(frozen=True)
class MethodSetting:
    """One pruning setting a run answers with: what a model checks before any encoding."""

    method: str
    ratio: float
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSettings:
    """Per-video settings: pruning, sampling (and Qwen-VL's max_pixels) and generation.

    method_options: options given for the pruning methods (--tau-s, --tau-p, --opt, a batch item's keys), each
    passed to every method run that takes it; --seed goes to a method that takes `seed` unless given there.
    """

    ratio: Optional[float] = None  # None: not given anywhere (see prune_ratio)
    budget: Optional[int] = None  # visual tokens to keep whatever the frame count, instead of a ratio
    method: str = DEFAULT_METHOD
    frames: Optional[int] = None
    fps: Optional[float] = None
    max_pixels: Optional[int] = None  # Qwen-VL's per-frame pixel budget (None: the checkpoint's)
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = DEFAULT_TEMPERATURE
    seed: int = DEFAULT_SEED
    method_options: dict[str, Any] = field(default_factory=dict)
    compare: tuple[str, ...] = ()

    @property
    def prune_ratio(self) -> float:
        """The ratio as given; not given: 0.9, or 0 with method none (which keeps every token)."""
        if self.ratio is not None:
            return self.ratio
        return 0.0 if self.method == "none" else DEFAULT_RATIO

    def ratio_of(self, method: str) -> float:
        """The ratio `method` runs at: --method at prune_ratio; a --compare method beside it (`none` at 0)."""
        return self.prune_ratio if method == self.method else ratio_for(method, self.prune_ratio)

    def pruning(self, method: Optional[str] = None) -> dict[str, Any]:
        """How much `method` (default --method) prunes, as VideoLLM.start's keywords: {"ratio": ratio_of(method),
        "budget": None}, or with a budget {"ratio": None, "budget": budget} (`none` beside it: ratio 0)."""
        method = method or self.method
        if self.budget is None:
            return {"ratio": self.ratio_of(method), "budget": None}
        if method == self.method:
            return {"ratio": None, "budget": self.budget}
        return dict(zip(("ratio", "budget"), pruning_for(method, None, self.budget)))

    def methods(self) -> list[str]:
        """--method first, then the --compare ones not already listed."""
        return list(dict.fromkeys((self.method, *self.compare)))

    def method_settings(self) -> list[MethodSetting]:
        """--method and every --compare method, each with its ratio and options."""
        return [MethodSetting(m, self.ratio_of(m), self.prune_options(m)) for m in self.methods()]

    def compared(self) -> list[str]:
        """The methods of `ask --compare` in the order listed, --method first where it is not listed."""
        return list(self.compare) if self.method in self.compare else self.methods()

    def prune_options(self, method: Optional[str] = None) -> dict[str, Any]:
        """The given options that `method` (default --method) takes, and --seed where it takes a seed."""
        method = method or self.method
        accepted = options_of(method)
        chosen = {name: value for name, value in self.method_options.items() if name in accepted}
        if "seed" in accepted and "seed" not in chosen:
            chosen["seed"] = self.seed
        return chosen

    def check(self) -> None:
        """Ratio, methods and options against the registry (ValueError with its message). Each given option must
        be taken by one of the methods run; with one method, the registry's own message names what it takes.
        The sampling and generation bounds are those the options declare (fpcli.cli.options), for values that
        come from a batch item rather than a flag."""
        if self.budget is not None:
            if self.ratio is not None:
                raise ValueError("give --ratio or --budget, not both")
            if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < MIN_BUDGET:
                raise ValueError(f"budget must be an int >= {MIN_BUDGET}, got {self.budget!r}")
            if self.method == "none":
                raise ValueError("method 'none' keeps every token; give no budget")
        for method in self.methods():
            validate_method(self.ratio_of(method), method, **self.prune_options(method))
        taken = {name for method in self.methods() for name in options_of(method)}
        for name in self.method_options:
            if name not in taken:
                validate_method(self.prune_ratio, self.method, **{name: self.method_options[name]})  # raises, naming it
        if self.frames is not None and not 1 <= self.frames <= MAX_FRAMES:
            raise ValueError(f"frames must be in 1..{MAX_FRAMES}, got {self.frames}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.max_pixels is not None and not 1 <= self.max_pixels <= MAX_PIXELS_CAP:
            raise ValueError(f"max_pixels must be in 1..{MAX_PIXELS_CAP}, got {self.max_pixels}")
        if self.max_new_tokens < MIN_NEW_TOKENS:
            raise ValueError(f"max_new_tokens must be >= {MIN_NEW_TOKENS}, got {self.max_new_tokens}")
        if self.temperature < MIN_TEMPERATURE:
            raise ValueError(f"temperature must be >= {MIN_TEMPERATURE:g}, got {self.temperature}")

    def override(self, options: dict[str, Any]) -> RunSettings:
        """A copy with a batch item's `options` applied and checked; ValueError names a bad key or value.

        Keys are the settings (ratio, budget, method, frames, fps, max_pixels, max_new_tokens, temperature, seed) or
        options of the item's pruning method (tau_s, or any option a registered method declares), typed by its
        declaration. An item's own budget replaces the command line's ratio, and its own ratio (or method none) the
        command line's budget.
        """
        changes: dict[str, Any] = {}
        names = {str(key).replace("-", "_"): value for key, value in options.items()}
        method = names.get("method", self.method)
        accepted = options_of(method) if method in method_names() else {}
        # An item with its own method keeps only the command line's options that this method takes.
        method_options = {name: value for name, value in self.method_options.items()
                          if method == self.method or name in accepted}
        for name, value in names.items():
            if name in ITEM_SETTINGS:
                changes[name] = _item_value(name, value)
            elif name in accepted:
                method_options[name] = value
            else:
                allowed = ", ".join([*ITEM_SETTINGS, *accepted])
                raise ValueError(f"unknown option '{name}' (allowed: {allowed})")
        if "budget" in changes and "ratio" not in changes:
            changes["ratio"] = None
        elif ("ratio" in changes or method == "none") and "budget" not in changes:
            changes["budget"] = None
        settings = replace(self, **changes, method_options=method_options)
        settings.check()
        return settings


# Settings a batch item may set for itself (name -> type); model, device etc. are per batch.
ITEM_SETTINGS: dict[str, type] = {
    "ratio": float,
    "budget": int,
    "method": str,
    "frames": int,
    "fps": float,
    "max_pixels": int,
    "max_new_tokens": int,
    "temperature": float,
    "seed": int,
}


def _item_value(name: str, value: Any) -> Any:
    kind = ITEM_SETTINGS[name]
    if value is None and name in ("ratio", "budget", "frames", "fps", "max_pixels"):
        return None
    accepted = (int, float) if kind is float else kind  # YAML/JSON write 1.0 as 1
    if isinstance(value, bool) or not isinstance(value, accepted):
        raise ValueError(f"option '{name}' must be {kind.__name__}, got {value!r}")
    return float(value) if kind is float else value
