"""Errors of fpcli.scale: a cluster that cannot be used, a worker that cannot go on."""

from __future__ import annotations

from fpcli.errors import ForestpruneError, InputError


class ScaleError(ForestpruneError):
    """Ray is missing, the cluster is unreachable or too small, or every worker died (exit 1)."""


class ScaleInputError(ScaleError, InputError):
    """A worker count or GPU share the cluster cannot be asked for (exit 2)."""


class WorkerFatal(ScaleError):
    """Raised by a worker's handler when no later item could run either (e.g. the model cannot load): it ends the
    whole run instead of failing one item. It crosses the process boundary by pickling, so it carries its message
    and hint itself (an exception's __cause__ does not survive)."""

    def __reduce__(self):  # ForestpruneError's __init__ takes (what, path, hint), not the formatted message
        return (type(self), (self.what, self.path, self.hint))
