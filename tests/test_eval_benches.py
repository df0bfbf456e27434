"""Benchmark loaders: each hub layout read into exact items; missing videos listed; bad input named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_eval import (
    JSONL_ROWS, LVB_ROWS, MLVU_ROWS, NEXTQA_ROWS, VIDEOMME_ROWS, make_jsonl, make_longvideobench, make_mlvu,
    make_mvbench, make_nextqa, make_videomme, write_json,
)

from fpcli.errors import InputError
from fpcli.eval import EvalInputError, load_bench, missing_videos
from fpcli.eval.benches.mvbench import TASKS


def test_videomme(tmp_path: Path) -> None:
    root = make_videomme(tmp_path)
    items = load_bench("videomme", root)
    assert [i.id for i in items] == ["001-1", "001-2", "002-1"]
    first = items[0]
    assert first.bench == "videomme" and first.video == root / "data" / "fFjv93ACGo8.mp4"
    assert first.question == "How many scenes are shown?"
    assert first.options == ("One.", "Two.", "Three.", "Four.") and first.answer == "C"
    assert first.category == "short" and first.time_bound is None
    assert first.extra["task_type"] == "Counting Problem"
    assert missing_videos(items) == [root / "data" / "absent01.mp4"]
    assert load_bench("videomme", root, limit=1) == items[:1]


def test_videomme_finds_other_extensions(tmp_path: Path) -> None:
    root = make_videomme(tmp_path)
    (root / "data" / "absent01.mkv").symlink_to(root / "data" / "fFjv93ACGo8.mp4")
    assert load_bench("videomme", root)[2].video == root / "data" / "absent01.mkv"
    assert missing_videos(load_bench("videomme", root)) == []


def test_mlvu(tmp_path: Path) -> None:
    root = make_mlvu(tmp_path)
    items = load_bench("mlvu", root)
    assert [(i.id, i.category, i.answer) for i in items] == [("plotQA_0", "plotQA", "A"), ("count_0", "count", "C")]
    assert items[1].question == "How many cuts are there?"
    assert items[1].options == ("1", "2", "3", "4")
    assert items[1].extra["question_full"] == MLVU_ROWS[1]["question"]
    assert items[0].video == root / "plotQA" / "movie101_66.mp4"
    assert missing_videos(items) == []


def test_mlvu_answer_as_option_text(tmp_path: Path) -> None:
    rows = [dict(MLVU_ROWS[1], answer="3")]  # MLVU's own json files hold the right option's text
    assert load_bench("mlvu", make_mlvu(tmp_path, rows))[0].answer == "C"


def test_longvideobench_parquet_and_json(tmp_path: Path) -> None:
    root = make_longvideobench(tmp_path / "a")
    items = load_bench("longvideobench", root)
    assert items[0].options == ("the first scene", "a new scene", "nothing")  # "N/A" padding dropped
    assert [(i.id, i.answer, i.category) for i in items] == [("86CxyhFV9MI_0", "A", "15"), ("86CxyhFV9MI_1", "E", "15")]
    assert items[0].video == root / "videos" / "86CxyhFV9MI.mp4" and missing_videos(items) == []
    json_root = tmp_path / "b"
    rows = [{k: v for k, v in r.items() if not k.startswith("option")} for r in LVB_ROWS]
    rows[0]["candidates"], rows[1]["candidates"] = ["the first scene", "a new scene", "nothing"], list("ABCDE")
    write_json(json_root / "lvb_val.json", rows)
    from_json = load_bench("longvideobench", json_root)
    assert from_json[0].options == items[0].options and from_json[1].answer == "E"


def test_mvbench_all_tasks_and_bounds(tmp_path: Path) -> None:
    root = make_mvbench(tmp_path)
    items = load_bench("mvbench", root)
    assert [i.category for i in items] == [t.name for t in TASKS] and len(items) == 20
    by_task = {i.category: i for i in items}
    sequence = by_task["action_sequence"]
    assert sequence.id == "action_sequence_0" and sequence.answer == "B"
    assert sequence.video == root / "video" / "star" / "Charades_v1_480" / "action_sequence_clip.mp4"
    assert sequence.time_bound == (2.0, 6.5)  # a full-length video: sampled inside its bound
    assert by_task["action_localization"].video == root / "sta" / "sta_video_segment" / "action_localization_clip.mp4"
    assert by_task["object_existence"].time_bound is None
    prediction = by_task["action_prediction"]
    assert prediction.video == root / "video" / "star" / "Charades_segment" / "USNP1_1.2999999999999998_15.4.mp4"
    assert prediction.time_bound is None  # the clip is the bound
    missing = missing_videos(items)
    assert len(missing) == 16
    assert root / "video" / "clevrer" / "video_validation" / "moving_count_clip.mp4" in missing


def test_nextqa(tmp_path: Path) -> None:
    root = make_nextqa(tmp_path)
    items = load_bench("nextqa", root)
    assert [(i.id, i.answer, i.category) for i in items] == [("4010069381_6", "C", "CW"), ("4010069381_7", "A", "TN")]
    assert items[0].question == "why did the square move " and items[0].options[4] == "it flew"
    assert items[0].video == root / "NExTVideo" / "4010069381.mp4"


def test_jsonl(tmp_path: Path) -> None:
    path = make_jsonl(tmp_path)
    items = load_bench("jsonl", path)
    assert [(i.id, i.answer, i.category, i.video) for i in items] == [
        ("cuts", "C", "counting", tmp_path / "clips" / "cuts.mp4"), ("move", "A", "", tmp_path / "clips" / "move.mp4")]


@pytest.mark.parametrize(("bench", "expected"), [
    ("videomme", "videomme: expected videomme/test-*.parquet or **/test-*.parquet in the data folder"),
    ("mlvu", "mlvu: expected test-*.parquet or **/test-*.parquet in the data folder"),
    ("longvideobench", "longvideobench: expected validation-*.parquet or **/validation-*.parquet or lvb_val.json"),
    ("mvbench", "mvbench: expected json/*.json in the data folder"),
    ("nextqa", "nextqa: expected MC/test-*.parquet or **/MC/test-*.parquet in the data folder"),
])
def test_folder_without_its_files(tmp_path: Path, bench: str, expected: str) -> None:
    with pytest.raises(EvalInputError) as err:
        load_bench(bench, tmp_path)
    assert str(err.value).startswith(expected) and str(err.value).endswith(f"({tmp_path})")
    assert err.value.exit_code == 2 and isinstance(err.value, InputError) and "\n" not in str(err.value)


def test_mvbench_names_the_missing_task_file(tmp_path: Path) -> None:
    root = make_mvbench(tmp_path)
    (root / "json" / "moving_count.json").unlink()
    with pytest.raises(EvalInputError, match=r"^mvbench: expected json/moving_count.json in the data folder"):
        load_bench("mvbench", root)


def test_unknown_bench_and_bad_limit(tmp_path: Path) -> None:
    with pytest.raises(EvalInputError, match=r"^unknown benchmark 'egoschema'; choose one of videomme, mlvu, "
                                             r"longvideobench, mvbench, nextqa, jsonl$"):
        load_bench("egoschema", tmp_path)
    with pytest.raises(EvalInputError, match=r"^limit must be an integer >= 1, got 0$"):
        load_bench("jsonl", make_jsonl(tmp_path), limit=0)


@pytest.mark.parametrize(("change", "message"), [
    ({"options": []}, "line 1: item cuts has no options"),
    ({"options": [str(i) for i in range(27)]}, "line 1: item cuts has 27 options, at most 26 can be labelled A-Z"),
    ({"answer": "D"}, "line 1: item cuts: answer 'D' is not one of its 3 options"),
    ({"answer": 3}, "line 1: item cuts: answer 3 is not one of its 3 options"),
    ({"answer": "c"}, "line 1: item cuts: answer 'c' is not one of its 3 options"),
    ({"options": "abc"}, "line 1: 'options' must be a list of strings"),
])
def test_bad_items(tmp_path: Path, change: dict, message: str) -> None:
    path = make_jsonl(tmp_path, [dict(JSONL_ROWS[0], **change)])
    with pytest.raises(EvalInputError) as err:
        load_bench("jsonl", path)
    assert str(err.value) == f"{message} ({path})"


def test_bad_answers_in_hub_files(tmp_path: Path) -> None:
    with pytest.raises(EvalInputError, match=r"^item 001-1: answer 'E' is not one of its 4 options"):
        load_bench("videomme", make_videomme(tmp_path / "v", [dict(VIDEOMME_ROWS[0], answer="E")]))
    with pytest.raises(EvalInputError, match=r"^item 4010069381_6: answer 5 is not one of its 5 options"):
        load_bench("nextqa", make_nextqa(tmp_path / "n", [dict(NEXTQA_ROWS[0], answer=5)]))
    root = make_mvbench(tmp_path / "m")
    row = json.loads((root / "json" / "state_change.json").read_text())[0]
    write_json(root / "json" / "state_change.json", [dict(row, answer="it flies")])
    with pytest.raises(EvalInputError, match=r"^item state_change_0: answer 'it flies' is not one of its 3 options"):
        load_bench("mvbench", root)


def test_missing_field_and_duplicate_ids(tmp_path: Path) -> None:
    rows = [{k: v for k, v in VIDEOMME_ROWS[0].items() if k != "question"}]
    with pytest.raises(EvalInputError, match=r"^row 1 has no 'question' field \(.*test-00000-of-00001.parquet\)$"):
        load_bench("videomme", make_videomme(tmp_path / "a", rows))
    path = make_jsonl(tmp_path / "b", [JSONL_ROWS[0], JSONL_ROWS[0]])
    with pytest.raises(EvalInputError, match=r"^jsonl: two questions have the id 'cuts'; ids must be unique"):
        load_bench("jsonl", path)
    (tmp_path / "c.jsonl").write_text(json.dumps(JSONL_ROWS[0]) + "\n\n{not json\n")
    with pytest.raises(EvalInputError, match=r"^line 3 is not valid JSON \(Expecting property name enclosed in "
                                             r"double quotes\) \("):
        load_bench("jsonl", tmp_path / "c.jsonl")
    (tmp_path / "d.jsonl").write_text(json.dumps(JSONL_ROWS[0]) + "\n\n" + json.dumps(
        {k: v for k, v in JSONL_ROWS[1].items() if k != "answer"}) + "\n")
    with pytest.raises(EvalInputError, match=r"^line 3 has no 'answer' field \("):
        load_bench("jsonl", tmp_path / "d.jsonl")
    with pytest.raises(EvalInputError, match=r"^jsonl: no such file \(--data is the .jsonl file of questions\) \("):
        load_bench("jsonl", tmp_path / "absent.jsonl")
    with pytest.raises(EvalInputError, match=r"^videomme: no such file or folder \(--data is the benchmark's folder\)"):
        load_bench("videomme", tmp_path / "absent")
    with pytest.raises(EvalInputError, match=r"^jsonl: expected a .jsonl file of questions"):
        load_bench("jsonl", tmp_path)
