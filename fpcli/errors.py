"""The one error base every layer's expected failures derive from.

An expected failure says `what` went wrong, optionally the `path` it concerns and a `hint` (what the user can do).
`str(err)` is one line, `<what> (<path>)`. `exit_code` is what the CLI exits with: 1 for a runtime failure
(a bad video, a model that cannot load), 2 for bad input that a lower layer is the first to see
(`InputError`: a prompt longer than the model's context, a benchmark folder without its files).
The CLI maps errors by these types and attributes alone.
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
