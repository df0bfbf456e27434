"""Table1: the paper's results table as data (rows method x ratio or budget, columns benchmarks, an average).

A frames sweep (eval --frames with several values) has one column per benchmark and frame count, `bench@frames`:
with a budget that is the paper's Table 2 (more frames at the token count of fewer); `none` has only the first.

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
    ratio: float | None  # None: a budget row
    cells: dict[str, Cell]  # column (bench name, or bench@frames in a frames sweep) -> cell, for every column
    average: Cell  # mean accuracy and mean retain over the benchmarks this row has
    complete: bool  # the row has a result for every column (the average covers them all)
    budget: int | None = None  # visual tokens kept, for a run given budgets


@dataclass(frozen=True)
class Table1:
    benches: list[str]  # column order (registry order; a frames sweep: then frame counts ascending)
    titles: dict[str, str]  # bench -> column header
    rows: list[Table1Row]

    def to_dict(self) -> dict:
        return asdict(self)


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _column(score: GroupScore) -> str:
    return score.bench if score.frames is None else f"{score.bench}@{score.frames}"


def build_table1(scores: list[GroupScore]) -> Table1:
    """One row per (method, ratio or budget): `none` first, then methods in order of appearance, ratios (budgets)
    ascending; columns in registry order, a frames sweep's frame counts ascending within a benchmark."""
    columns = sorted({(s.bench, s.frames or 0): _column(s) for s in scores}.items(),
                     key=lambda kv: (list(BENCHES).index(kv[0][0]), kv[0][1]))
    benches = [column for _, column in columns]
    titles = {column: BENCHES[bench].title + (f" {frames}f" if frames else "") for (bench, frames), column in columns}
    by_row: dict[tuple[str, float | None, int | None], dict[str, GroupScore]] = {}
    for s in scores:
        by_row.setdefault((s.method, None if s.budget is not None else s.ratio, s.budget), {})[_column(s)] = s
    methods: dict[str, int] = {}
    for method, _, _ in by_row:
        methods.setdefault(method, len(methods))
    rows = []
    def order(key: tuple[str, float | None, int | None]) -> tuple[bool, int, float]:
        return key[0] != REFERENCE, methods[key[0]], key[2] or key[1] or 0.0

    for (method, ratio, budget), cols in sorted(by_row.items(), key=lambda kv: order(kv[0])):
        # a benchmark where nothing of this row was scored (every question failed) has no accuracy, not 0
        cells = {b: Cell(cols[b].accuracy, cols[b].retain) if b in cols and cols[b].n else Cell(None, None)
                 for b in benches}
        rows.append(Table1Row(
            method=method, ratio=ratio, cells=cells,
            average=Cell(_mean([c.accuracy for c in cells.values()]), _mean([c.retain for c in cells.values()])),
            complete=all(c.accuracy is not None for c in cells.values()), budget=budget,
        ))
    return Table1(benches=benches, titles=titles, rows=rows)
