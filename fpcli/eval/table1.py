"""Table1: the paper's results table as data (rows method x ratio, columns benchmarks, an average).

Rich-free: a renderer (the CLI) prints it; `to_dict()` is its JSON form.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from fpcli.eval.benches import BENCHES
from fpcli.eval.scoring import REFERENCE, GroupScore


@dataclass(frozen=True)
class Cell:
    accuracy: float | None  # percent; None: this row has no result on this benchmark
    retain: float | None  # percent of `none`'s accuracy on the same benchmark


@dataclass(frozen=True)
class Table1Row:
    method: str
    ratio: float
    cells: dict[str, Cell]  # bench name -> cell, for every column
    average: Cell  # mean accuracy and mean retain over the benchmarks this row has
    complete: bool  # the row has a result for every column (the average covers them all)


@dataclass(frozen=True)
class Table1:
    benches: list[str]  # column order (registry order)
    titles: dict[str, str]  # bench -> column header
    rows: list[Table1Row]

    def to_dict(self) -> dict:
        return asdict(self)


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def build_table1(scores: list[GroupScore]) -> Table1:
    """One row per (method, ratio): `none` first, then methods in order of appearance, ratios
    ascending; columns in registry order."""
    benches = [b for b in BENCHES if any(s.bench == b for s in scores)]
    by_row: dict[tuple[str, float], dict[str, GroupScore]] = {}
    for s in scores:
        by_row.setdefault((s.method, s.ratio), {})[s.bench] = s
    methods: dict[str, int] = {}
    for method, _ in by_row:
        methods.setdefault(method, len(methods))
    rows = []
    def order(key: tuple[str, float]) -> tuple[bool, int, float]:
        return key[0] != REFERENCE, methods[key[0]], key[1]

    for (method, ratio), cols in sorted(by_row.items(), key=lambda kv: order(kv[0])):
        # a benchmark where nothing of this row was scored (every question failed) has no accuracy, not 0
        cells = {b: Cell(cols[b].accuracy, cols[b].retain) if b in cols and cols[b].n else Cell(None, None)
                 for b in benches}
        rows.append(Table1Row(
            method=method, ratio=ratio, cells=cells,
            average=Cell(_mean([c.accuracy for c in cells.values()]), _mean([c.retain for c in cells.values()])),
            complete=all(c.accuracy is not None for c in cells.values()),
        ))
    return Table1(benches=benches, titles={b: BENCHES[b].title for b in benches}, rows=rows)
