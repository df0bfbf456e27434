"""An append-only JSONL log that survives crashes: one write + fsync per record, torn tails repaired.

Below the CLI and the evaluation layer, which both keep results this way (`forestprune batch`'s
results file, an evaluation run's predictions): a record is on disk before the next item starts;
Ctrl-C is held until a write completes; on reopen a last line cut short by a hard crash, unreadable
lines, failed records (to be retried) and duplicates are dropped, by one atomic rewrite.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Key = Callable[[dict[str, Any]], Any]


@contextlib.contextmanager
def sigint_held() -> Iterator[None]:
    """Delay Ctrl-C (and SIGTERM, which a batch treats alike) until the block is done (POSIX); raised right after."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def replace_file(path: Path, data: bytes) -> None:
    """Write `path` atomically: a crash leaves the old or the new file, never a mix."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    with contextlib.suppress(OSError):  # directory fsync: not supported everywhere
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def read_records(path: Path) -> tuple[list[dict[str, Any]], bool, int]:
    """(records, truncated, unreadable): the JSON objects of the complete lines of `path`."""
    if not path.exists():
        return [], False, 0
    lines = path.read_bytes().split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline, else a line cut short
    records, unreadable = [], 0
    for raw in lines:
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            unreadable += 1
    return records, bool(tail.strip()), unreadable


class JsonlLog:
    """Records keyed by `key(record)`; `is_done(record)` says which count as finished.

    On open, `done` holds the finished records by key (the first of duplicates). Records that
    `owned(record)` claims (default: all) are the ones this run may redo: their failures are dropped
    so they run again (`retrying` counts them), and so are their duplicates; other records are kept
    as they are."""

    def __init__(
        self,
        path: Path,
        key: Key,
        is_done: Callable[[dict[str, Any]], bool],
        owned: Callable[[dict[str, Any]], bool] = lambda record: True,
    ) -> None:
        self.path = path
        records, self.truncated, self.unreadable = read_records(path)
        self.done: dict[Any, dict[str, Any]] = {}
        self.retrying = 0
        kept = []
        for record in records:
            k, finished = key(record), is_done(record)
            if owned(record) and (not finished or k in self.done):
                self.retrying += not finished
                continue
            if finished and k is not None and k not in self.done:
                self.done[k] = record
            kept.append(record)
        if self.truncated or self.unreadable or len(kept) != len(records):
            replace_file(path, b"".join(_line(r) for r in kept))
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, record: dict[str, Any]) -> None:
        with sigint_held():
            write_all(self.fd, _line(record))
            os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> JsonlLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
