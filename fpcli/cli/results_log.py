"""`ResultsLog`: the `batch --out` JSONL file. What is done already, and appending one record per finished item.

Each record is one write + fsync, with Ctrl-C held off during it, so the file never holds half a line from us.
On opening, the file is rewritten (atomically) without the records of items about to be retried and without a
last line cut short by a hard crash, so it ends with exactly one record per attempted item (`fpcli.jsonl`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fpcli.jsonl import JsonlLog


def _ident(record: dict[str, Any]) -> str | None:
    return None if record.get("id") is None else str(record["id"])


class ResultsLog(JsonlLog):
    """The --out JSONL file, keyed by item id. Records of ids outside `job_ids` (another jobs file's) are kept
    as they are; those of `job_ids` that failed run again."""

    def __init__(self, path: Path, job_ids: set[str]) -> None:
        super().__init__(
            path, _ident, lambda r: r.get("status") == "ok" and _ident(r) is not None, lambda r: _ident(r) in job_ids
        )
