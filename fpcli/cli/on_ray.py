"""`--ray [ADDRESS]`, `--workers`, `--gpus-per-worker`: the options that run `batch` and `eval` items on Ray workers
(fpcli.run.on_ray runs them: each worker its own model, the driver alone writes the results).
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from typer.core import TyperCommand

from fpcli.scale.cluster import LOCAL

RAY_PANEL = "Ray"

RayAddress = Annotated[
    Optional[str],
    typer.Option("--ray", metavar="[ADDRESS]", rich_help_panel=RAY_PANEL, show_default=False,
                 help="Run on Ray: alone (or `local`) starts a local Ray instance; `auto` or ray://HOST:PORT joins a "
                 "cluster. Put it after JOBS, or give an address."),
]
Workers = Annotated[
    Optional[int],
    typer.Option("--workers", min=1, rich_help_panel=RAY_PANEL, show_default=False,
                 help="Ray workers, each with its own model (default: one per GPU, else 1)."),
]
GpusPerWorker = Annotated[
    Optional[float],
    typer.Option("--gpus-per-worker", min=0.0, rich_help_panel=RAY_PANEL, show_default=False,
                 help="GPUs each worker reserves (default: 1 on a GPU cluster, 0 on CPUs; 72B needs several)."),
]


class RayCommand(TyperCommand):
    """A command with --ray [ADDRESS]: Typer has no options with an optional value, so `--ray` followed by nothing
    or by another option gets the value `local` before click parses the arguments."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        given: list[str] = []
        for index, arg in enumerate(args):
            given.append(arg)
            if arg == "--":
                given.extend(args[index + 1:])
                break
            following = args[index + 1] if index + 1 < len(args) else None
            if arg == "--ray" and (following is None or following.startswith("-")):
                given.append(LOCAL)
        return super().parse_args(ctx, given)
