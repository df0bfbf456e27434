"""The one exception the video layer raises for bad input."""

from __future__ import annotations

from fpcli.errors import ForestpruneError


class VideoError(ForestpruneError):
    """A video cannot be sampled. `str(err)` is one line: `<what> (<file>)`.

    `what` and `path` are kept apart so callers can lay the message out themselves; `hint`,
    when set, says what the user can do about it (the CLI prints it on its own line).
    """
