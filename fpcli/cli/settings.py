"""The settings a command's typed parameters turn into, and their checks against the method catalogue.

`ModelSettings` is what `load_model` gets; `RunSettings` is per video (pruning, sampling, generation) and a batch
item may override it. Both are built by the commands from their typed parameters (never by matching names in
click's ctx.params), so renaming an option is a type error, not a silently dropped value. Pruning is checked by
`fpcli.model.methods.validate_method` (ratio, method, options: the pruning registries' one set of rules, for
methods before and inside the LLM) before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from fpcli.cli.errors import UsageError, usage_error
from fpcli.cli.options import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_METHOD,
    DEFAULT_RATIO,
    DEFAULT_SEED,
    DEFAULT_TEMPERATURE,
    MAX_FRAMES,
    MAX_PIXELS_CAP,
    MIN_NEW_TOKENS,
    MIN_TEMPERATURE,
    Attention,
)
from fpcli.model.methods import method_names, options_of, ratio_for, validate_method


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
    attn: str = Attention.sdpa.value

    @classmethod
    def of(cls, model: Optional[str], layout: Any, device: str, dtype: Any, attn: Any = Attention.sdpa
           ) -> ModelSettings:
        """From the typed command parameters (Enum values become their strings)."""
        return cls(model, plain(layout), device, plain(dtype), plain(attn))


@dataclass(frozen=True)
class RunSettings:
    """Per-video settings: pruning, sampling (and Qwen-VL's max_pixels) and generation.

    method_options: options given for the pruning methods (--tau-s, --tau-p, --opt, a batch item's keys), each
    passed to every method run that takes it; --seed goes to a method that takes `seed` unless given there.
    """

    ratio: Optional[float] = None  # None: not given anywhere (see prune_ratio)
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

    def methods(self) -> list[str]:
        """--method first, then the --compare ones not already listed."""
        return list(dict.fromkeys((self.method, *self.compare)))

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

        Keys are the settings (ratio, method, frames, fps, max_pixels, max_new_tokens, temperature, seed) or options of
        the item's pruning method (tau_s, or any option a registered method declares), typed by its declaration.
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
        settings = replace(self, **changes, method_options=method_options)
        settings.check()
        return settings


# Settings a batch item may set for itself (name -> type); model, device etc. are per batch.
ITEM_SETTINGS: dict[str, type] = {
    "ratio": float,
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
    if value is None and name in ("ratio", "frames", "fps", "max_pixels"):
        return None
    accepted = (int, float) if kind is float else kind  # YAML/JSON write 1.0 as 1
    if isinstance(value, bool) or not isinstance(value, accepted):
        raise ValueError(f"option '{name}' must be {kind.__name__}, got {value!r}")
    return float(value) if kind is float else value


def parse_opts(pairs: Optional[list[str]], methods: list[str]) -> dict[str, Any]:
    """--opt name=value ... -> {name: value typed by the spec of the first method that takes it}."""
    parsed: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise ValueError(f"--opt takes NAME=VALUE, got {pair!r}")
        spec = next((options_of(m)[name] for m in methods if name in options_of(m)), None)
        if spec is None:
            validate_method(0.0, methods[0], **{name: text})  # raises, naming the option and what the method takes
        parsed[name] = spec.parse(text) if spec is not None else text
    return parsed


def parse_compare(value: Optional[str]) -> tuple[str, ...]:
    """'uniform, gprune' -> ('uniform', 'gprune')."""
    if not value:
        return ()
    return tuple(name.strip() for name in value.split(",") if name.strip())


def run_settings(*, ratio: Optional[float], method: str, frames: Optional[int], fps: Optional[float],
                 tau_s: Optional[float], tau_p: Optional[float], opt: Optional[list[str]], seed: int,
                 max_pixels: Optional[int] = None,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, temperature: float = DEFAULT_TEMPERATURE,
                 compare: Optional[str] = None, config: Optional[tuple[Path, set[str]]] = None) -> RunSettings:
    """A command's typed pruning/sampling/generation parameters as checked settings: a bad value is a usage
    error (exit 2), before any video is decoded or model loaded. `config`: the --config file and the parameters it
    set (fpcli.cli.config.config_origin), named in the message of an option that came from it."""
    compared = parse_compare(compare)
    try:
        flags = {name: value for name, value in (("tau_s", tau_s), ("tau_p", tau_p)) if value is not None}
        settings = RunSettings(
            ratio=ratio, method=method, frames=frames, fps=fps, max_pixels=max_pixels, max_new_tokens=max_new_tokens,
            temperature=temperature, seed=seed, compare=compared,
            method_options={**flags, **parse_opts(opt, list(dict.fromkeys((method, *compared))))},
        )
        settings.check()
    except ValueError as exc:
        if method == "none" and ratio not in (None, 0):
            raise usage_error(str(exc), hint="use --ratio 0 with --method none") from exc
        raise UsageError(str(exc) + _from_config(str(exc), config, opt)) from exc
    return settings


def _from_config(message: str, config: Optional[tuple[Path, set[str]]], opt: Optional[list[str]]) -> str:
    """' (from config.yaml)' when the option `message` names was set by the config file, else ''."""
    if config is None:
        return ""
    path, names = config
    options = {name for name in ("tau_s", "tau_p") if name in names}
    if "opt" in names:
        options.update(pair.partition("=")[0].strip().replace("-", "_") for pair in opt or [])
    return f" (from {path})" if any(f"'{name}'" in message or message.startswith(f"{name} ") for name in options) \
        else ""
