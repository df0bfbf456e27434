"""Scores from predictions: per (bench, method, ratio or budget, frame count of a sweep) accuracy, retain, breakdowns,
costs.

Accuracies are percentages (0-100), as Table 1 prints them. `none` is the unpruned reference:
retain = accuracy / accuracy of `none` on the same benchmark, in percent. The aggregation follows the
protocol: micro (correct / questions), macro over categories (MLVU: mean of task-type accuracies),
macro over categories of answered questions (MVBench: mean of subtask accuracies, empty responses
left out). Categories are the ones present in the predictions: a partial run (--limit, a shard)
averages what it has instead of counting absent categories as 0.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from fpcli.eval import protocols as p

REFERENCE = "none"


@dataclass
class GroupScore:
    """One bench x method x ratio (or budget) x frame count of a sweep."""

    bench: str
    method: str
    ratio: float | None  # with a budget: the mean effective ratio of its answers (1 - budget / visual tokens)
    n: int  # questions scored
    correct: int
    accuracy: float  # percent, by the protocol's aggregation
    retain: float | None  # percent of `none`'s accuracy; None without a `none` reference (or one at 0)
    fallbacks: int  # answers that were a random pick
    failed: int  # questions that could not be answered (missing/broken video, error)
    per_category: dict[str, float] = field(default_factory=dict)  # percent, micro within the category
    timing_s: dict[str, float] = field(default_factory=dict)  # mean seconds per stage per question
    prefill_tflops: float | None = None  # mean per question
    peak_memory_mb: float | None = None  # max over questions
    budget: int | None = None  # visual tokens kept, where the run gave budgets instead of ratios
    frames: int | None = None  # a frames sweep's frame count (None: the run's one count)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _key(record: dict[str, Any]) -> tuple[str, str, float | None, int | None, int | None]:
    budget = record.get("budget")
    ratio = None if budget is not None else float(record["ratio"])
    return str(record["bench"]), str(record["method"]), ratio, budget, record.get("frames")


def _accuracy(records: list[dict[str, Any]], aggregation: str) -> float:
    if aggregation == p.MICRO:
        return 100 * sum(bool(r["correct"]) for r in records) / len(records) if records else 0.0
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if aggregation == p.MACRO_ANSWERED and r.get("response", "") == "":
            continue  # lmms-eval's mvbench_aggregate_results counts only non-empty predictions
        by_category[str(r.get("category", ""))].append(r)
    if not by_category:
        return 0.0
    scores = [100 * sum(bool(r["correct"]) for r in rs) / len(rs) for rs in by_category.values()]
    return sum(scores) / len(scores)


def _mean_dicts(dicts: list[dict[str, float]]) -> dict[str, float]:
    sums: dict[str, float] = defaultdict(float)
    for d in dicts:
        for k, v in d.items():
            sums[k] += float(v)
    return {k: v / len(dicts) for k, v in sums.items()} if dicts else {}


def score_groups(records: list[dict[str, Any]], protocol: p.Protocol) -> list[GroupScore]:
    """One GroupScore per (bench, method, ratio or budget, frames) found in `records` (predictions.jsonl lines),
    ordered by bench, then `none` first, then methods by first appearance, frame counts, budgets and ratios ascending.
    Retain is against the bench's first `none` group (a frames sweep runs it at its first frame count)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[_key(r)].append(r)
    method_order = {REFERENCE: -1}
    for r in records:
        method_order.setdefault(str(r["method"]), len(method_order))
    scores: list[GroupScore] = []
    for key in sorted(groups, key=lambda k: (k[0], method_order[k[1]], k[4] or 0, k[3] or 0, k[2] or 0)):
        bench, method, ratio, budget, frames = key
        rs = groups[key]
        ok = [r for r in rs if r.get("status", "ok") == "ok"]
        if budget is not None:
            effective = [float(r["ratio"]) for r in ok]
            ratio = sum(effective) / len(effective) if effective else None
        aggregation = protocol.for_bench(bench).aggregation
        categories: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in ok:
            categories[str(r.get("category", ""))].append(r)
        flops = [float(r["prefill_tflops"]) for r in ok if r.get("prefill_tflops") is not None]
        memory = [float(r["peak_memory_mb"]) for r in ok if r.get("peak_memory_mb") is not None]
        scores.append(GroupScore(
            bench=bench, method=method, ratio=ratio, n=len(ok), correct=sum(bool(r["correct"]) for r in ok),
            accuracy=_accuracy(ok, aggregation), retain=None,
            fallbacks=sum(bool(r.get("fallback")) for r in ok), failed=len(rs) - len(ok),
            per_category={c: _accuracy(v, p.MICRO) for c, v in sorted(categories.items()) if c},
            timing_s=_mean_dicts([r["timing_s"] for r in ok if r.get("timing_s")]),
            prefill_tflops=sum(flops) / len(flops) if flops else None,
            peak_memory_mb=max(memory) if memory else None, budget=budget, frames=frames,
        ))
    reference: dict[str, float] = {}
    for s in scores:
        if s.method == REFERENCE and s.n:
            reference.setdefault(s.bench, s.accuracy)
    for s in scores:
        if reference.get(s.bench):
            s.retain = 100 * s.accuracy / reference[s.bench]
    return scores
