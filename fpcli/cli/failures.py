"""The end-of-run account of what failed (batch, eval): each distinct error once, with how often it happened and the
first item it hit, and a hint to re-run only when a re-run can succeed.

A retry can fix what lies outside the command: a video that was missing or unreadable (the file can be put back
or re-encoded), a runtime failure (out of memory, a lost worker). It cannot fix bad usage (exit 2: a bad option
of an item, a question too long for the context) or a bug: those fail the same way again.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class _Seen:
    count: int
    first: str
    retryable: bool


@dataclass
class Failures:
    """Distinct errors in the order first seen."""

    seen: dict[str, _Seen] = field(default_factory=dict)

    def add(self, error: str, item: str, retryable: bool) -> None:
        """One failure: its one-line `error`, the `item` it hit (e.g. "item 'a'"), whether a re-run can fix it."""
        if error in self.seen:
            self.seen[error].count += 1
        else:
            self.seen[error] = _Seen(1, item, retryable)

    @property
    def retryable(self) -> int:
        return sum(seen.count for seen in self.seen.values() if seen.retryable)

    def lines(self, items: str) -> list[str]:
        """`Failed 3×: <error> (first: <item>)` per distinct error, then the re-run hint where one helps;
        `items` names what failed ("item(s)", "prediction(s)")."""
        out = [f"Failed {seen.count}×: {error} (first: {seen.first})" for error, seen in self.seen.items()]
        total = sum(seen.count for seen in self.seen.values())
        if self.retryable == total:
            out.append(f"Hint: re-run the same command to retry the failed {items}.")
        elif self.retryable:
            out.append(f"Hint: re-run the same command to retry {self.retryable} of the {total} failed {items}; the "
                       f"other {total - self.retryable} fail the same way until their cause is fixed.")
        return out

    def print(self, items: str, file: TextIO | None = None) -> None:
        for line in self.lines(items):
            print(line, file=file or sys.stderr)
