"""The errors of the evaluation layer: bad benchmark input (exit 2) and runtime failures (exit 1)."""

from __future__ import annotations

from fpcli.errors import ForestpruneError, InputError


class EvalError(ForestpruneError):
    """An evaluation step failed at run time (a run directory that cannot be read back, ...)."""


class EvalInputError(EvalError, InputError):
    """Bad benchmark input, found before any model work: unknown bench, missing annotation file,
    an item whose options or answer make no sense. One line, exit code 2."""
