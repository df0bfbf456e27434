"""The one exception the video layer raises for bad input."""

from __future__ import annotations

import os


class VideoError(Exception):
    """A video cannot be sampled. `str(err)` is one line: `<what> (<file>)`.

    `what` and `path` are kept apart so callers can lay the message out themselves; `hint`,
    when set, says what the user can do about it (the CLI prints it on its own line).
    """

    def __init__(self, what: str, path: str | os.PathLike, hint: str | None = None) -> None:
        self.what = " ".join(what.split())  # ffmpeg messages may carry newlines: keep one line
        self.path = str(path)
        self.hint = hint
        super().__init__(f"{self.what} ({self.path})")
