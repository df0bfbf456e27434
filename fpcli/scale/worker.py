"""The body of a worker actor: builds its handler once, then runs work units, one outcome per item as it finishes.

A handler is what the run's `factory()` returns, called in the worker process (so a model loads where it runs):
`handler(key, items) -> Iterable[result]`, one result per item, in order, for items that share `key` (a video). A
handler that raises an ordinary exception fails that one item (its error is the message) and is called again with
the items after it; `WorkerFatal` ends the run instead. The factory must be picklable (a module-level class or
function, a functools.partial of one): it is sent to every worker, and again to a worker Ray restarts.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional

from fpcli.errors import ForestpruneError
from fpcli.scale.errors import WorkerFatal
from fpcli.scale.units import WorkUnit

Handler = Callable[[str, list[Any]], Iterable[Any]]


@dataclass(frozen=True)
class Outcome:
    """One item of a unit, done: its result (`error` None) or why it failed."""

    index: int  # position in the unit the worker was given
    value: Any
    error: Optional[str]
    seconds: float


def describe(exc: BaseException) -> str:
    """One line: our errors as their message, anything else with its type (`KeyError: 'x'`)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, ForestpruneError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class UnitWorker:
    """Made a Ray actor by fpcli.scale.engine; plain Python here, so it is testable without Ray."""

    def __init__(self, factory: Callable[[], Handler]) -> None:
        self._factory = factory
        self._handler: Optional[Handler] = None

    def pid(self) -> int:
        return os.getpid()

    def run(self, unit: WorkUnit) -> Iterator[Outcome]:
        """Outcomes of the unit's items in order; with Ray each one streams to the driver when it is yielded."""
        if self._handler is None:
            self._handler = self._factory()  # a failure here is not the item's: it ends the run (see engine)
        position = 0
        while position < len(unit):
            start = time.perf_counter()
            try:
                for value in self._handler(unit.key, list(unit.items[position:])):
                    yield Outcome(position, value, None, time.perf_counter() - start)
                    position += 1
                    if position == len(unit):
                        break
                    start = time.perf_counter()
            except WorkerFatal:
                raise
            except Exception as exc:
                yield Outcome(position, None, describe(exc), time.perf_counter() - start)
                position += 1
                continue
            if position < len(unit):
                raise RuntimeError(f"the handler returned {position} result(s) for {len(unit)} item(s)")
