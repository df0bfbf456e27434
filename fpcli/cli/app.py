"""The `forestprune` Typer app: commands, the global flags, and where errors become exit codes.

Command modules import torch, transformers and av only inside their functions, so building
this app (and answering --help) stays fast.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from fpcli import __version__
from fpcli.cli import errors
from fpcli.cli.ask import ask
from fpcli.cli.batch import batch
from fpcli.cli.cache import cache_app
from fpcli.cli.chat import chat
from fpcli.cli.on_ray import RayCommand
from fpcli.cli.convert import convert
from fpcli.cli.eval import eval_command
from fpcli.cli.methods import methods
from fpcli.cli.noise import hide_library_warnings
from fpcli.cli.options import Debug
from fpcli.cli.stats import stats


class _Group(TyperGroup):
    """Maps every failure of a command to `Error: ...` on stderr and an exit code (see fpcli.cli.errors)."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (errors.ClickException, typer.Exit, typer.Abort, BrokenPipeError):  # Typer's own handling
            raise
        except KeyboardInterrupt:
            print("Interrupted.", file=sys.stderr)
            raise typer.Exit(errors.EXIT_INTERRUPTED) from None
        except Exception as exc:
            raise typer.Exit(errors.report(exc, errors.debug_enabled(ctx.meta))) from None

    def main(self, args: Any = None, prog_name: Optional[str] = None, complete_var: Optional[str] = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        # Parse errors are printed here in the CLI's own one-line format rather than Typer's panel.
        try:
            returned = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = returned if isinstance(returned, int) else errors.EXIT_OK
        except errors.ClickException as exc:
            code = errors.report_click(exc)
        except typer.Abort:
            print("Aborted.", file=sys.stderr)
            code = errors.EXIT_FAILURE
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    cls=_Group,
    name="forestprune",
    no_args_is_help=True,
    add_completion=True,  # Typer's --install-completion / --show-completion
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"forestprune {__version__}")
        raise typer.Exit()


def _threads(value: Optional[int]) -> Optional[int]:
    """--threads: torch's intra-op threads for the vision tower and the LLM (pruning uses one on CPU:
    fpcli.prune.threads)."""
    if value is not None:
        import torch

        torch.set_num_threads(value)
    return value


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Debug = False,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", min=1, callback=_threads, envvar="FORESTPRUNE_THREADS", show_default=False,
        help="CPU threads torch uses for the vision tower and the LLM (default: torch's, one per core). On a machine "
        "others share, fewer can be faster; pruning uses one either way.")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Ask video LLMs about videos, cheaply: ForestPrune drops most visual tokens before the LLM."""
    if not errors.debug_enabled(ctx.meta):
        hide_library_warnings()  # a command's own --debug shows them again (errors.set_debug)


app.command("ask")(ask)
app.command("stats")(stats)
app.command("batch", cls=RayCommand)(batch)
app.command("chat")(chat)
app.command("convert")(convert)
app.command("methods")(methods)
app.command("eval", cls=RayCommand)(eval_command)
app.add_typer(cache_app)


def main() -> None:
    """Entry point of the `forestprune` script and `python -m fpcli` (named forestprune in messages too)."""
    app(prog_name="forestprune")
