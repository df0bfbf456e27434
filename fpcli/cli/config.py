"""`--config FILE.yaml`: defaults for any option, read before the other options are processed.

Precedence: built-in defaults < `--config FILE.yaml` < flags on the command line. The file is a YAML mapping of
long option names (`ratio: 0.8`, `max-new-tokens: 64` or `max_new_tokens`); an eager option callback fills
click's `default_map` with it, so every value goes through the same type conversion and range checks as a flag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
import yaml

from fpcli.run.jobs import yaml_problem

try:  # typer >= 0.22 vendors click privately (as fpcli.cli.errors imports it)
    from typer._click.core import ParameterSource
except ImportError:  # pragma: no cover
    from click.core import ParameterSource

CONFIG_KEY = "fpcli.config"  # in click's ctx.meta: the config file and the parameters it set


def _key(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _long_names(params: list[Any]) -> dict[str, Any]:
    """Config key (a long flag without dashes, `-` or `_` alike) -> click option."""
    return {
        _key(flag): p
        for p in params
        if p.param_type_name == "option" and p.name != "config"
        for flag in p.opts
        if flag.startswith("--")
    }


def _config_keys(ctx: typer.Context) -> dict[str, Any]:
    """Config keys this command takes -> its option; keys only other commands take -> None (ignored here),
    so one config file can serve every command."""
    root = ctx.find_root().command
    keys: dict[str, Any] = {
        key: None for command in getattr(root, "commands", {}).values() for key in _long_names(command.params)
    }
    keys.update(_long_names(ctx.command.params))
    return keys


def load_config(ctx: typer.Context, param: typer.CallbackParam, value: Optional[Path]) -> Optional[Path]:
    if value is None or ctx.resilient_parsing:
        return value
    try:
        data = yaml.safe_load(value.read_text(encoding="utf-8"))
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {value}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise typer.BadParameter(f"{value} is not valid YAML: {yaml_problem(exc)}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{value} must be a YAML mapping of option names to values")
    keys = _config_keys(ctx)
    defaults: dict[str, Any] = {}
    for key, raw in data.items():
        name = _key(str(key))
        if name not in keys:
            known = ", ".join(sorted(k.replace("_", "-") for k in keys))
            raise typer.BadParameter(f"unknown option '{key}' in {value} (known: {known})")
        option = keys[name]
        if option is None:
            continue
        try:  # check now, so the message can name the config file
            option.process_value(ctx, raw)
        except typer.BadParameter as exc:
            raise typer.BadParameter(f"'{key}' in {value}: {exc.message}") from exc
        defaults[option.name] = raw
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta[CONFIG_KEY] = (value, set(defaults))
    return value


def config_origin(ctx: typer.Context) -> Optional[tuple[Path, set[str]]]:
    """(the --config file, the parameters whose value came from it) or None: a check that fails later (a method
    option the chosen method does not take) can then name the file the value came from."""
    given = ctx.meta.get(CONFIG_KEY)
    if given is None:
        return None
    path, names = given
    return path, {name for name in names if ctx.get_parameter_source(name) is ParameterSource.DEFAULT_MAP}
