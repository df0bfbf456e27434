"""`forestprune methods`: every pruning method a run accepts, with its options (fpcli.model.method_catalogue).

The table prints each method as a block (its kind and where it prunes, then one line per option) rather than as
columns, so that nothing is cut in a narrow terminal or a log. `--json` prints one object per method.
"""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from fpcli.cli.errors import usage_error
from fpcli.cli.options import Debug, Json


def _default(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value) if isinstance(value, str) else str(value)


def methods(
    name: Annotated[Optional[str], typer.Argument(metavar="[METHOD]", show_default=False,
                                                  help="Only this method.")] = None,
    json_output: Json = False,
    debug: Debug = False,
) -> None:
    """List the pruning methods (before the LLM and inside it) and each one's options: type, default, range, help.

    These are the names --method and --compare take, and the options --opt NAME=VALUE (or a config file, or a batch
    item's options) sets.
    """
    from fpcli.model.method_catalogue import catalogue, method_info
    from fpcli.model.methods import method_names

    if name is not None and name not in method_names():
        raise usage_error(f"unknown method {name!r}; available: {', '.join(method_names())}")
    listed = catalogue() if name is None else [method_info(name)]
    if json_output:
        for info in listed:
            print(json.dumps(info.to_dict(), ensure_ascii=False))
        return
    for number, info in enumerate(listed):
        if number:
            print()
        print(f"{info.name}  ({info.kind}) {info.where}")
        if not info.options:
            print("  takes no options")
        for option in info.options:
            where = f" in {option.range}" if option.range else ""
            about = f": {option.help}" if option.help else ""
            print(f"  {option.name}  {option.type}{where}, default {_default(option.default)}{about}")
