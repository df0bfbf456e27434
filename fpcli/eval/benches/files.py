"""Reading a benchmark folder as the hub ships it: find its annotation file, read its rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fpcli.eval.errors import EvalInputError


def find_file(data: Path, bench: str, patterns: list[str]) -> Path:
    """The first file under `data` matching one of the glob `patterns` (relative, tried in order,
    matches sorted so the choice is stable). None matching is bad input naming the first pattern."""
    if not data.exists():
        raise EvalInputError(f"{bench}: no such file or folder (--data is the benchmark's folder)", data)
    if not data.is_dir():
        raise EvalInputError(f"{bench}: the data folder is not a folder", data)
    for pattern in patterns:
        matches = sorted(p for p in data.glob(pattern) if p.is_file())
        if matches:
            return matches[0]
    expected = " or ".join(patterns)
    raise EvalInputError(f"{bench}: expected {expected} in the data folder (the hub dataset as downloaded)", data)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a .parquet (pyarrow), .json (a list of objects) or .jsonl (one object a line) file."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq  # only benchmarks shipped as parquet need pyarrow loaded

            rows: Any = pq.read_table(path).to_pylist()
        elif path.suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise EvalInputError(f"cannot be read ({' '.join(str(err).split())[:200]})", path) from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise EvalInputError("is not a list of objects (one per question)", path)
    return rows


def field(row: dict[str, Any], name: str, source: Path, index: int) -> Any:
    """row[name], or bad input naming the row (`index` 0-based, shown from 1 like a spreadsheet) and the field."""
    if name not in row or row[name] is None:
        raise EvalInputError(f"row {index + 1} has no {name!r} field", source)
    return row[name]


def first_existing(candidates: list[Path]) -> Path:
    """The first candidate path that is a file (or folder of frames); the first one when none is,
    so a missing video is reported under the path a user would look at first."""
    for path in candidates:
        if path.exists():
            return path
    return candidates[0]
