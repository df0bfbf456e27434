"""SIGTERM as Ctrl-C: a scheduler's stop (`kill`, a job's time limit) ends a batch the way Ctrl-C does, with its
summary printed and its results file consistent, instead of killing the process mid-report."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Inside the block, SIGTERM raises KeyboardInterrupt in the main thread (elsewhere signals cannot be caught:
    the block does nothing); the previous handler is back after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
