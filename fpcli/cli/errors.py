"""Expected failures -> one clean line on stderr and an exit code.

Exit codes: 0 success, 1 runtime failure (bad video, model error, failed batch item),
2 bad usage (invalid option value, unknown method, missing argument, or an fpcli.errors.InputError
of a lower layer), 130 Ctrl-C. Errors are mapped by type: a ForestpruneError carries its exit code,
path and hint; this module imports no other layer, so `--help` never loads torch or av.
Every error prints `Error: <what> (<file>)` and, where it helps, a `Hint: ...` line.
`--debug` (any command, or `forestprune --debug ...`, or FORESTPRUNE_DEBUG=1) adds the traceback.
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

from fpcli.cli.noise import show_library_warnings
from fpcli.errors import ForestpruneError, InputError, describe

try:  # typer >= 0.22 vendors click privately; older releases depend on the click package
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException, NoArgsIsHelpError, UsageError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DEBUG_KEY = "fpcli.debug"  # in click's ctx.meta, shared by the group and its subcommand


class CliError(ForestpruneError):
    """A failure the CLI itself detects (exit 1): `what` happened to `path`, optionally with a hint."""


class CliUsageError(CliError, InputError):
    """Bad usage the CLI detects after parsing (a missing file, an unusable jobs file): exit 2."""


def usage_error(what: str, path: str | os.PathLike | None = None, hint: str | None = None) -> CliUsageError:
    return CliUsageError(what, path, hint)


def debug_enabled(meta: dict | None = None) -> bool:
    return bool((meta or {}).get(DEBUG_KEY)) or os.environ.get("FORESTPRUNE_DEBUG", "") not in ("", "0")


def report(exc: BaseException, debug: bool) -> int:
    """Print `exc` as the CLI's error line(s) on stderr and return its exit code."""
    message, hint, code = describe(exc)
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(f"Error: {message}", file=sys.stderr)
    if hint:
        print(f"Hint: {hint}", file=sys.stderr)
    return code


def report_click(exc: ClickException) -> int:
    """Usage errors from parsing, in the same format; `forestprune` alone prints the help."""
    if isinstance(exc, NoArgsIsHelpError):  # the help itself (Rich has printed it already, leaving this empty)
        if exc.format_message().strip():
            print(exc.format_message())
        return exc.exit_code
    print(f"Error: {exc.format_message()}", file=sys.stderr)
    if isinstance(exc, UsageError) and exc.ctx is not None:
        print(f"Hint: see '{exc.ctx.command_path} --help'", file=sys.stderr)
    return exc.exit_code


def set_debug(ctx: typer.Context, value: bool) -> bool:
    """Option callback for --debug: remember it where the group's error handler looks, and let the libraries'
    own warnings through (fpcli.cli.noise)."""
    if value:
        ctx.meta[DEBUG_KEY] = True
        show_library_warnings()
    return value
