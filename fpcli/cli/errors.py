"""Expected failures -> one clean line on stderr and an exit code.

Exit codes: 0 success, 1 runtime failure (bad video, model error, failed batch item),
2 bad usage (invalid option value, unknown method, missing argument), 130 Ctrl-C.
Every error prints `Error: <what> (<file>)` and, where it helps, a `Hint: ...` line.
`--debug` (any command, or `forestprune --debug ...`, or FORESTPRUNE_DEBUG=1) adds the traceback.
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

try:  # typer >= 0.22 vendors click privately; older releases depend on the click package
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException, NoArgsIsHelpError, UsageError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DEBUG_KEY = "fpcli.debug"  # in click's ctx.meta, shared by the group and its subcommand


class CliError(Exception):
    """A failure the CLI itself detects: `what` happened to `file`, optionally with a hint."""

    def __init__(self, what: str, file: str | os.PathLike | None = None, hint: str | None = None,
                 exit_code: int = EXIT_FAILURE) -> None:
        self.what = what
        self.file = None if file is None else str(file)
        self.hint = hint
        self.exit_code = exit_code
        super().__init__(what if self.file is None else f"{what} ({self.file})")


class Fatal(Exception):
    """Ends the command even inside a loop that goes on past a failed video or item; raised `from` the error it
    stands for (the model cannot be resolved or loaded: no later video could run either), which is what is reported.
    """


def usage_error(what: str, file: str | os.PathLike | None = None, hint: str | None = None) -> CliError:
    return CliError(what, file, hint, exit_code=EXIT_USAGE)


def _known(module: str, name: str) -> type[BaseException] | None:
    """The class `module.name` if that module is loaded (an exception of it can only exist then).

    Keeps this module free of fpcli.video/fpcli.model imports, so `--help` never loads torch or av."""
    mod = sys.modules.get(module)
    return getattr(mod, name, None) if mod is not None else None


def describe(exc: BaseException) -> tuple[str, str | None, int]:
    """(message line, hint line or None, exit code) for an exception raised by a command."""
    message, hint, code = _describe(exc)
    return " ".join(message.split()), hint, code  # one line, whatever the exception's text looked like


def _describe(exc: BaseException) -> tuple[str, str | None, int]:
    if isinstance(exc, Fatal) and exc.__cause__ is not None:
        return _describe(exc.__cause__)
    hint = getattr(exc, "hint", None)
    if isinstance(exc, CliError):
        return str(exc), hint, exc.exit_code
    for module, name in (("fpcli.video", "VideoError"), ("fpcli.model", "ModelError")):
        cls = _known(module, name)
        if cls is not None and isinstance(exc, cls):
            return str(exc), hint, EXIT_FAILURE
    if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError not turned into a ModelError
        return "out of GPU memory", "try fewer --frames or a higher --ratio", EXIT_FAILURE
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or exc} ({exc.filename})", hint, EXIT_FAILURE
    if isinstance(exc, (ValueError, OSError)):
        return str(exc), hint, EXIT_FAILURE
    bug = "this is a bug; run again with --debug and report the traceback"
    return f"{type(exc).__name__}: {exc}", bug, EXIT_FAILURE


def one_line(exc: BaseException) -> str:
    """The message of `describe`, for records (batch results) rather than the terminal."""
    return describe(exc)[0]


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
    """Option callback for --debug: remember it where the group's error handler looks."""
    if value:
        ctx.meta[DEBUG_KEY] = True
    return value
