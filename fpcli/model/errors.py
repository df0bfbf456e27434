"""The exception types of the model layer: expected failures, each a one-line message for the user."""

from fpcli.errors import ForestpruneError, InputError


class ModelError(ForestpruneError):
    """A model could not be found, loaded or run (missing weights, not cached offline, CUDA out of memory, ...).

    The message is a single line that says what went wrong and, where one helps, what to do about it.
    Conversion errors (`fpcli.model.llava.convert`) subclass it.
    """


class ModelInputError(ModelError, InputError):
    """Input the model cannot take, found before encoding (a prompt longer than the context): exit 2."""
