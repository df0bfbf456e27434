"""The benchmark registry: name -> loader of a folder (or file) as the hub ships it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fpcli.eval.benches import jsonl, longvideobench, mlvu, mvbench, nextqa, videomme
from fpcli.eval.errors import EvalInputError
from fpcli.eval.items import EvalItem


@dataclass(frozen=True)
class Bench:
    name: str
    hub: str  # the dataset repo whose download DIR is (what lmms-eval loads)
    load: Callable[[Path], list[EvalItem]]
    title: str  # the column header of Table 1


BENCHES: dict[str, Bench] = {
    b.name: b
    for b in (
        Bench("videomme", "lmms-lab/Video-MME", videomme.load, "VideoMME"),
        Bench("mlvu", "sy1998/MLVU_dev", mlvu.load, "MLVU"),
        Bench("longvideobench", "longvideobench/LongVideoBench", longvideobench.load, "LongVideoBench"),
        Bench("mvbench", "OpenGVLab/MVBench (revision video)", mvbench.load, "MVBench"),
        Bench("nextqa", "lmms-eval/NExTQA (config MC)", nextqa.load, "NExT-QA"),
        Bench("jsonl", "(a local .jsonl file)", jsonl.load, "JSONL"),
    )
}


def get_bench(name: str) -> Bench:
    if name not in BENCHES:
        raise EvalInputError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHES)}")
    return BENCHES[name]


def load_bench(name: str, data: str | Path, *, limit: int | None = None) -> list[EvalItem]:
    """The items of benchmark `name` read from `data`, in file order (the first `limit` only).
    Videos are not opened: a missing one stays in the list (see `missing_videos`)."""
    bench = get_bench(name)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise EvalInputError(f"limit must be an integer >= 1, got {limit!r}")
    items = bench.load(Path(data))
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise EvalInputError(f"{name}: two questions have the id {item.id!r}; ids must be unique", data)
        seen.add(item.id)
    return items if limit is None else items[:limit]
