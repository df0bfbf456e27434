"""Scoring: aggregation per protocol with hand-computed numbers, retain, Table 1, the plot."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from fpcli.eval import EvalInputError, build_table1, get_protocol, plot_accuracy, score_groups


def rec(bench, method, ratio, category, correct, response="X", status="ok", **extra):
    return {"bench": bench, "id": f"{category}{len(extra)}", "method": method, "ratio": ratio, "category": category,
            "correct": correct, "response": response, "status": status, "fallback": False, **extra}


MLVU = [
    rec("mlvu", "none", 0.0, "plotQA", True, timing_s={"prefill": 1.0, "generate": 2.0}, prefill_tflops=2.0,
        peak_memory_mb=100.0),
    rec("mlvu", "none", 0.0, "plotQA", True, timing_s={"prefill": 3.0, "generate": 2.0}, prefill_tflops=4.0,
        peak_memory_mb=300.0),
    rec("mlvu", "none", 0.0, "plotQA", False, timing_s={"prefill": 2.0, "generate": 5.0}, prefill_tflops=3.0,
        peak_memory_mb=200.0),
    rec("mlvu", "none", 0.0, "count", True),
    rec("mlvu", "forestprune", 0.9, "plotQA", True, fallback=True),
    rec("mlvu", "forestprune", 0.9, "plotQA", False),
    rec("mlvu", "forestprune", 0.9, "plotQA", False),
    rec("mlvu", "forestprune", 0.9, "count", True),
    rec("mlvu", "forestprune", 0.9, "count", False, status="error"),
]

MVBENCH = [
    rec("mvbench", "none", 0.0, "action_count", True, "B"),
    rec("mvbench", "none", 0.0, "action_count", False, ""),
    rec("mvbench", "none", 0.0, "action_count", False, "C"),
    rec("mvbench", "none", 0.0, "state_change", True, "A"),
]


def test_mlvu_macro_over_task_types_and_retain() -> None:
    none, forest = score_groups(MLVU, get_protocol("lmms-eval"))
    assert (none.method, none.n, none.correct) == ("none", 4, 3)
    assert none.accuracy == pytest.approx((200 / 3 + 100) / 2)  # plotQA 2/3, count 1/1: 83.33, not micro 75
    assert none.per_category == pytest.approx({"count": 100.0, "plotQA": 200 / 3})
    assert none.timing_s == pytest.approx({"prefill": 2.0, "generate": 3.0})
    assert none.prefill_tflops == pytest.approx(3.0) and none.peak_memory_mb == 300.0
    assert none.retain == pytest.approx(100.0)
    assert (forest.n, forest.correct, forest.failed, forest.fallbacks) == (4, 2, 1, 1)
    assert forest.accuracy == pytest.approx((100 / 3 + 100) / 2)
    assert forest.retain == pytest.approx(80.0)  # 66.67 / 83.33
    assert forest.prefill_tflops is None and forest.timing_s == {}


def test_paper_protocol_is_micro() -> None:
    none, forest = score_groups(MLVU, get_protocol("paper"))
    assert none.accuracy == pytest.approx(75.0) and forest.accuracy == pytest.approx(50.0)
    assert forest.retain == pytest.approx(50 / 75 * 100)
    assert score_groups(MVBENCH, get_protocol("paper"))[0].accuracy == pytest.approx(50.0)


def test_mvbench_mean_of_subtasks_without_empty_responses() -> None:
    (none,) = score_groups(MVBENCH, get_protocol("lmms-eval"))
    assert (none.n, none.correct) == (4, 2)
    assert none.accuracy == pytest.approx((50.0 + 100.0) / 2)  # action_count 1 of 2 answered; state_change 1/1


def test_no_reference_no_retain() -> None:
    (forest,) = score_groups([r for r in MLVU if r["method"] != "none"], get_protocol("paper"))
    assert forest.retain is None


def _table():
    records = MLVU + [
        rec("videomme", "none", 0.0, "short", True), rec("videomme", "none", 0.0, "short", False),
        rec("videomme", "forestprune", 0.9, "short", False), rec("videomme", "forestprune", 0.9, "short", False),
        rec("videomme", "forestprune", 0.7, "short", True), rec("videomme", "forestprune", 0.7, "short", True),
    ]
    return build_table1(score_groups(records, get_protocol("paper")))


def test_table1_rows_columns_average() -> None:
    table = _table()
    assert table.benches == ["videomme", "mlvu"] and table.titles == {"videomme": "VideoMME", "mlvu": "MLVU"}
    assert [(r.method, r.ratio, r.complete) for r in table.rows] == [
        ("none", 0.0, True), ("forestprune", 0.7, False), ("forestprune", 0.9, True)]
    none, f07, f09 = table.rows
    assert none.average.accuracy == pytest.approx((50 + 75) / 2) and none.average.retain == pytest.approx(100)
    assert f09.cells["videomme"].accuracy == 0.0 and f09.cells["videomme"].retain == 0.0
    assert f09.average.accuracy == pytest.approx(25.0) and f09.average.retain == pytest.approx((0 + 200 / 3) / 2)
    assert f07.cells["mlvu"].accuracy is None and f07.average.accuracy == 100.0 and f07.average.retain == 200.0
    assert table.to_dict()["rows"][0]["cells"]["mlvu"] == {"accuracy": 75.0, "retain": 100.0}


def test_table1_row_with_nothing_scored_has_no_accuracy() -> None:
    records = MLVU + [rec("mlvu", "fastv", 0.5, "plotQA", False, status="error")]  # every question failed
    table = build_table1(score_groups(records, get_protocol("paper")))
    fastv = table.rows[-1]
    assert (fastv.method, fastv.cells["mlvu"].accuracy, fastv.average.accuracy, fastv.complete) == \
        ("fastv", None, None, False)


def test_plot(tmp_path: Path) -> None:
    out = plot_accuracy(_table(), tmp_path / "plots" / "acc.png")
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (720, 440)
        colours = {c for _, c in image.getcolors(maxcolors=1 << 16)}
    assert (0xD6, 0x27, 0x28) in colours  # the first method's line is drawn
    plot_accuracy(_table(), tmp_path / "mlvu.png", bench="mlvu")
    with pytest.raises(EvalInputError, match=r"^no results for benchmark 'nextqa' to plot$"):
        plot_accuracy(_table(), tmp_path / "x.png", bench="nextqa")
