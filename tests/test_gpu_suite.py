"""benchmarks/gpu_suite.py --smoke: every step of the GPU suite, at tiny shapes on the CPU, so the script that a lent
GPU's few minutes depend on cannot rot. Not marked or skipped anywhere: it runs wherever the suite runs.

One subprocess, as on the device; the report's structure and every part's figures are checked. The budget is the
script's cap, not its duration (about a minute on an idle 2-core machine): a loaded CI machine gets room.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fpcli.model.methods import is_in_llm, is_two_stage, method_names
from fpcli.prune import available_methods
from fpcli.prune.registry import extras_of

LLM_KEEP = {"holitom": 0.5, "flashvid": 0.3}  # the authors' in-LLM shares (HoliTom's 1 - r, FlashVID's retention)

REPO = Path(__file__).resolve().parents[1]
PARTS = ["tests", "selection", "llava", "qwen", "cli"]
SMOKE_SHAPES = ["8x16x32", "4x16x32", "16x9x32"]
KEPT_AT_09 = {"8x16x32": 13, "4x16x32": 6, "16x9x32": 14}  # round-half-up of 10% of 128, 64, 144 tokens


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("gpu-suite")
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_suite.py"), "--smoke", "--out", str(out),
                           "--budget-s", "500", "--checkpoints", str(out / "checkpoints")], cwd=REPO,
                          capture_output=True, text=True, timeout=560)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads((out / "report.json").read_text()), (out / "report.md").read_text()


def test_report_keys_and_every_part_ran(report):
    data, _ = report
    assert set(data) == {"smoke", "date", "budget_s", "machine", "setting", "parts", "seconds"}
    assert data["smoke"] is True and data["budget_s"] == 500 and data["seconds"] < 500
    assert set(data["machine"]) == {"host", "cpu", "cpus", "gpu", "python", "torch", "cuda", "transformers",
                                    "load_average_start"}  # fmt: skip
    assert list(data["parts"]) == PARTS
    for name, part in data["parts"].items():
        assert set(part) == {"status", "seconds", "limit_s", "error", "figures"}, name
        assert (part["status"], part["error"]) == ("ok", None), name
        assert part["seconds"] <= part["limit_s"], name


def test_tests_part_counts_the_cuda_tests(report):
    figures = report[0]["parts"]["tests"]["figures"]
    assert "tests/test_cuda_pipeline.py" in figures["files"] and "tests/test_forest.py" in figures["files"]
    counts = figures["counts"]
    assert set(counts) == {"selected", "passed", "failed", "errors", "skipped"}
    assert counts["failed"] == counts["errors"] == 0 and figures["failed_tests"] == []
    # on the CPU the CUDA tests skip; the device-error test (named device) runs
    assert counts["passed"] >= 1 and counts["skipped"] >= 4 and counts["selected"] == counts["passed"] + counts["skipped"]


def test_selection_times_every_registered_method_at_every_shape(report):
    figures = report[0]["parts"]["selection"]["figures"]
    assert (figures["device"], figures["dtype"]) == ("cpu", "float32")
    assert list(figures["methods"]) == available_methods()
    for method, row in figures["methods"].items():
        assert list(row) == SMOKE_SHAPES, method
        for shape, cell in row.items():
            t, n, _ = (int(v) for v in shape.split("x"))
            assert cell["ms"] > 0 and cell["calls"] == 3, (method, shape)
            assert cell["kept"] == (t * n if method == "none" else KEPT_AT_09[shape]), (method, shape)


def test_llava_part_runs_every_method_and_the_table2_budget(report):
    figures = report[0]["parts"]["llava"]["figures"]
    assert figures["model"]["shape"] == "tiny-deep" and figures["model"]["layout"] == "video"
    assert figures["encode"]["visual"] == 8 * 7 * 7 and figures["encode"]["grid"] == [7, 7]
    assert list(figures["methods"]) == method_names()
    for method, row in figures["methods"].items():
        assert row["fits"] is True and row["generated"] == 2 and row["tflops"] > 0 and row["peak_mb"] > 0, method
        if not is_in_llm(method) and not is_two_stage(method):  # every layer on the kept tokens: 10% of 392, rounded
            assert row["visual"] == (["392@L0"] if method == "none" else ["39@L0"]), method
        if is_two_stage(method):  # K / llm_keep enter, K = 39 from its layer (2 at this shape) on
            assert row["visual"] == [f"{round(39 / LLM_KEEP[method])}@L0", "39@L2"], method
    for method in ("fastv", "sttm"):  # every token up to layer 2, then pruned
        assert figures["methods"][method]["visual"][0] == "392@L0", method
    table2 = figures["table2"]
    assert (table2["frames"], table2["budget"], table2["visual"]) == (16, 98, 784)
    assert table2["ratio"] == pytest.approx(1 - 98 / 784)
    assert table2["methods"]["forestprune"]["visual"] == ["98@L0"] and table2["methods"]["none"]["visual"] == ["784@L0"]


def test_qwen_part_runs_the_pre_llm_methods_and_records_the_refusals(report):
    figures = report[0]["parts"]["qwen"]["figures"]
    assert figures["model"]["layout"] == "qwen2.5-vl" and figures["encode"]["frames"] == 8  # 2 fps x 4 s
    assert list(figures["methods"]) == method_names()
    for method, row in figures["methods"].items():  # the Qwen-VL tower gives no attention map to rank by
        if method in available_methods() and "vision_attention" in extras_of(method):
            assert row["fits"] is False and "needs the vision tower's vision attention" in row["error"], method
        else:
            assert row["fits"] is True, method


def test_cli_part_asks_and_evaluates_cold_then_warm(report):
    figures = report[0]["parts"]["cli"]["figures"]
    assert figures["methods"] == method_names()
    runs = figures["runs"]
    assert list(runs) == ["ask cold", "ask warm", "eval cold", "eval warm"]
    assert all(run["rc"] == 0 and run["error"] is None and run["per_question_s"] > 0 for run in runs.values())
    assert (runs["ask cold"]["cache"], runs["ask warm"]["cache"]) == (["miss"], ["hit"])
    assert runs["ask cold"]["questions"] == runs["ask warm"]["questions"] == 3
    for name in ("eval cold", "eval warm"):
        assert runs[name]["questions"] == runs[name]["expected"] == 12 * len(method_names()), name
        assert runs[name]["failed"] == 0, name


def test_markdown_report(report):
    data, text = report
    lines = text.splitlines()
    assert lines[0].startswith("Random weights at tiny shapes (nothing downloaded")
    assert data["machine"]["torch"] in lines[0] and data["date"] in lines[0]
    headings = [line for line in lines if line.startswith("## ")]
    assert [h.split(":")[0].split(" (")[0] for h in headings] == [
        "## Tests on the device", "## Selection time of the pre-LLM methods", "## llava", "## qwen",
        "## `forestprune ask` and `eval` end to end"]  # fmt: skip
    rows = {line.split(" | ")[0].removeprefix("| ") for line in lines if line.startswith("| ")}
    assert set(method_names()) <= rows and {"ask cold", "ask warm", "eval cold", "eval warm"} <= rows


@pytest.fixture
def suite(monkeypatch):
    """benchmarks/gpu_suite.py as a module (registered while the test runs: its dataclasses look themselves up)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_suite", REPO / "benchmarks" / "gpu_suite.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_suite", module)
    spec.loader.exec_module(module)
    return module


def test_missing_packages_are_named_before_anything_runs(suite, tmp_path, monkeypatch, capsys):
    real = suite.importlib.util.find_spec
    monkeypatch.setattr(suite.importlib.util, "find_spec", lambda name: None if name in ("av", "PIL") else real(name))
    assert suite.main(["--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: missing Python packages: av, pillow. On a machine without network, install them from "
                          "wheels brought beside the code: pip install --no-index wheels/*.whl (for PyAV: pip download "
                          "av --only-binary :all: --python-version 3.12 --platform manylinux_2_28_x86_64 -d wheels/")
    assert not (tmp_path / "report").exists()


def test_usage_errors_exit_2(suite, tmp_path, capsys):
    assert suite.main(["--out", str(tmp_path), "--smoke", "--parts", "tests,gpu"]) == 2
    assert capsys.readouterr().err == "Error: unknown part 'gpu'; parts: tests, selection, llava, qwen, cli\n"
    if not __import__("torch").cuda.is_available():
        assert suite.main(["--out", str(tmp_path)]) == 2
        assert capsys.readouterr().err == "Error: no CUDA device here; --smoke runs the same steps on the CPU\n"
