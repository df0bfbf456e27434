"""A command's typed pruning, sampling and generation parameters -> checked `RunSettings` (fpcli.run.settings): a bad
value is a usage error (exit 2) before any video is decoded or model loaded. Also `--opt NAME=VALUE` and
`--compare` parsing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from fpcli.cli.errors import UsageError, usage_error
from fpcli.model.methods import options_of, validate_method
from fpcli.run.settings import DEFAULT_MAX_NEW_TOKENS, DEFAULT_TEMPERATURE, RunSettings


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
                 compare: Optional[str] = None, budget: Optional[int] = None,
                 config: Optional[tuple[Path, set[str]]] = None) -> RunSettings:
    """A command's typed pruning/sampling/generation parameters as checked settings: a bad value is a usage
    error (exit 2), before any video is decoded or model loaded. `config`: the --config file and the parameters it
    set (fpcli.cli.config.config_origin), named in the message of an option that came from it."""
    compared = parse_compare(compare)
    try:
        flags = {name: value for name, value in (("tau_s", tau_s), ("tau_p", tau_p)) if value is not None}
        settings = RunSettings(
            ratio=ratio, method=method, frames=frames, fps=fps, max_pixels=max_pixels, max_new_tokens=max_new_tokens,
            temperature=temperature, seed=seed, compare=compared, budget=budget,
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
