"""`ResultsLog`: the `batch --out` JSONL file. What is done already, and appending one record per finished item.

Each record is one write + fsync, with Ctrl-C held off during it, so the file never holds half a line from us.
On opening, the file is rewritten (atomically) without the records of items about to be retried and without a
last line cut short by a hard crash, so it ends with exactly one record per attempted item.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Delay Ctrl-C until the block is done (POSIX); it is raised right after."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class ResultsLog:
    """The --out JSONL file: what is done already, and appending one record per finished item."""

    def __init__(self, path: Path, job_ids: set[str]) -> None:
        self.path = path
        self.done: dict[str, dict[str, Any]] = {}  # id -> ok record
        self.retrying = 0  # failed records dropped to run again
        self.truncated = False  # a last line cut short by a hard crash was dropped
        self.unreadable = 0  # lines that were not JSON records, dropped
        self._recover(job_ids)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _recover(self, job_ids: set[str]) -> None:
        if not self.path.exists():
            return
        lines = self.path.read_bytes().split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline, else a line cut short
        self.truncated = bool(tail.strip())
        kept: list[bytes] = []
        for raw in lines:
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                self.unreadable += 1
                continue
            ident = None if record.get("id") is None else str(record["id"])
            if ident in job_ids and (record.get("status") != "ok" or ident in self.done):
                self.retrying += record.get("status") != "ok"
                continue
            if record.get("status") == "ok" and ident is not None:
                self.done[ident] = record
            kept.append(raw)
        if self.truncated or len(kept) != len(lines):
            self._rewrite(kept)

    def _rewrite(self, lines: list[bytes]) -> None:
        """Replace the file by `lines`, atomically: a crash leaves the old or the new file, never a mix."""
        temporary = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, b"".join(line + b"\n" for line in lines))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        with contextlib.suppress(OSError):  # directory fsync: not supported everywhere
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def append(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with _sigint_held():
            _write_all(self.fd, data)
            os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)
