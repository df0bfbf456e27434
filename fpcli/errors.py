"""The one error base every layer's expected failures derive from.

An expected failure says `what` went wrong, optionally the `path` it concerns and a `hint` (what the user can do).
`str(err)` is one line, `<what> (<path>)`. `exit_code` is what the CLI exits with: 1 for a runtime failure
(a bad video, a model that cannot load), 2 for bad input that a lower layer is the first to see
(`InputError`: a prompt longer than the model's context, a benchmark folder without its files).
The CLI maps errors by these types and attributes alone (`describe`), and records (batch results, eval
predictions) carry `one_line(exc)`.
"""

from __future__ import annotations

import os


class ForestpruneError(Exception):
    """An expected failure: one line for the user, and optionally a hint."""

    exit_code = 1

    def __init__(self, what: str, path: str | os.PathLike | None = None, hint: str | None = None) -> None:
        self.what = " ".join(str(what).split())  # ffmpeg/transformers messages may carry newlines: keep one line
        self.path = None if path is None else str(path)
        self.hint = hint
        super().__init__(self.what if self.path is None else f"{self.what} ({self.path})")


class InputError(ForestpruneError):
    """Bad input found below the CLI, before any expensive step: a usage error (exit 2)."""

    exit_code = 2


class Fatal(Exception):
    """Ends the command even inside a loop that goes on past a failed video or item; raised `from` the error it
    stands for (the model cannot be resolved or loaded: no later video could run either), which is what is reported.
    """


BUG_HINT = "this is a bug; run again with --debug and report the traceback"


def describe(exc: BaseException) -> tuple[str, str | None, int]:
    """(message line, hint line or None, exit code) for an exception raised by a command, by its type:
    every layer's expected failures are ForestpruneErrors that carry their own exit code and hint."""
    message, hint, code = _describe(exc)
    return " ".join(message.split()), hint, code  # one line, whatever the exception's text looked like


def _describe(exc: BaseException) -> tuple[str, str | None, int]:
    if isinstance(exc, Fatal) and exc.__cause__ is not None:
        return _describe(exc.__cause__)
    if isinstance(exc, ForestpruneError):
        return str(exc), exc.hint, exc.exit_code
    if isinstance(exc, MemoryError):
        return "out of memory", "try fewer --frames or a higher --ratio", 1
    if isinstance(exc, OSError):  # PermissionError, disk full, ...: the system's own words and the file
        where = f" ({exc.filename})" if exc.filename is not None else ""
        return f"{exc.strerror or exc}{where}", None, 1
    if isinstance(exc, ValueError):
        return str(exc), None, 1
    return f"{type(exc).__name__}: {exc}", BUG_HINT, 1


def one_line(exc: BaseException) -> str:
    """The message of `describe`, for records (batch results, eval predictions) rather than the terminal."""
    return describe(exc)[0]


def retryable(exc: BaseException) -> bool:
    """Whether running what failed with `exc` again can succeed: a runtime failure (a video missing or unreadable
    now, a model out of memory), not a value the input gave (a usage error, a bad option) nor a bug."""
    if isinstance(exc, ValueError) and not isinstance(exc, ForestpruneError):
        return False  # a value the item gave
    _, hint, code = describe(exc)
    return code == 1 and hint != BUG_HINT
