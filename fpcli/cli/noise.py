"""Third-party warnings kept off stderr unless --debug: transformers' logging ("Token indices sequence length is
longer than the specified maximum sequence length ...", which our own context check already covers) and Ray's
notice about token authentication at a local `ray.init`. They are about the libraries, not the user's run, and
buried its own messages; --debug (or FORESTPRUNE_DEBUG=1) shows them again. Errors still show.
"""

from __future__ import annotations

import logging
import os

TRANSFORMERS_VERBOSITY = "TRANSFORMERS_VERBOSITY"  # read by transformers when it sets up its logging
QUIETED_LOGGERS = ("transformers", "ray._private.authentication.authentication_token_setup")
_set_by_us = False


def hide_library_warnings() -> None:
    """Raise the named loggers to ERROR (transformers also through its environment variable, for a transformers
    imported later, and for Ray workers, which inherit it), unless the user set its verbosity."""
    global _set_by_us
    if TRANSFORMERS_VERBOSITY not in os.environ:
        os.environ[TRANSFORMERS_VERBOSITY] = "error"
        _set_by_us = True
    for name in QUIETED_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def show_library_warnings() -> None:
    """Undo `hide_library_warnings` (--debug)."""
    global _set_by_us
    if _set_by_us:
        os.environ.pop(TRANSFORMERS_VERBOSITY, None)
        _set_by_us = False
    for name in QUIETED_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
