"""Benchmark fixtures: each benchmark's folder in its exact hub layout, a few rows, sample videos.

Builders write the annotation files (parquet through pyarrow, json, jsonl) the way the hub ships
them and link the repository's sample_videos/ clips where the loaders look; some rows point at
videos that are deliberately absent, to check that missing videos are listed, not skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fpcli.eval.benches.mvbench import TASKS

SAMPLES = Path(__file__).resolve().parent.parent / "sample_videos"


def link_video(path: Path, sample: str = "hard_cuts.mp4") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(SAMPLES / sample)
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_json(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


VIDEOMME_ROWS = [
    {"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Astronomy",
     "videoID": "fFjv93ACGo8",
     "question_id": "001-1", "task_type": "Counting Problem", "question": "How many scenes are shown?",
     "options": ["A. One.", "B. Two.", "C. Three.", "D. Four."], "answer": "C"},
    {"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Astronomy",
     "videoID": "fFjv93ACGo8",
     "question_id": "001-2", "task_type": "Object Recognition", "question": "What is moving?",
     "options": ["A. A square.", "B. A car.", "C. A dog.", "D. Nothing."], "answer": "A"},
    {"video_id": "002", "duration": "long", "domain": "Sports Competition", "sub_category": "Football",
     "videoID": "absent01",
     "question_id": "002-1", "task_type": "Action Recognition", "question": "Who scores?",
     "options": ["A. Nobody.", "B. The keeper.", "C. The striker.", "D. The referee."], "answer": "C"},
]


def make_videomme(root: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    write_parquet(root / "videomme" / "test-00000-of-00001.parquet", VIDEOMME_ROWS if rows is None else rows)
    link_video(root / "data" / "fFjv93ACGo8.mp4")
    return root


MLVU_ROWS = [
    {"video_name": "plotQA/movie101_66.mp4", "duration": 10.0,
     "question": "What color is the square?\n(A) white\n(B) red",
     "candidates": ["white", "red"], "answer": "A", "task_type": "plotQA", "question_id": "plotQA_0"},
    {"video_name": "count/count_3.mp4", "duration": 10.0,
     "question": "How many cuts are there?\n(A) 1\n(B) 2\n(C) 3\n(D) 4",
     "candidates": ["1", "2", "3", "4"], "answer": "C", "task_type": "count", "question_id": "count_0"},
]


def make_mlvu(root: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    write_parquet(root / "test-00000-of-00001.parquet", MLVU_ROWS if rows is None else rows)
    link_video(root / "plotQA" / "movie101_66.mp4", "moving_object.mp4")
    link_video(root / "count" / "count_3.mp4", "hard_cuts.mp4")
    return root


LVB_ROWS = [
    {"video_id": "v1", "video_path": "86CxyhFV9MI.mp4", "id": "86CxyhFV9MI_0", "question": "What returns at the end?",
     "option0": "the first scene", "option1": "a new scene", "option2": "nothing", "option3": "N/A", "option4": "N/A",
     "correct_choice": 0, "duration_group": 15, "question_category": "S2E", "duration": 10.0},
    {"video_id": "v1", "video_path": "86CxyhFV9MI.mp4", "id": "86CxyhFV9MI_1", "question": "Is there a square?",
     "option0": "yes", "option1": "no", "option2": "maybe", "option3": "only at first", "option4": "only at the end",
     "correct_choice": 4, "duration_group": 15, "question_category": "E2O", "duration": 10.0},
]


def make_longvideobench(root: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    write_parquet(root / "validation-00000-of-00001.parquet", LVB_ROWS if rows is None else rows)
    link_video(root / "videos" / "86CxyhFV9MI.mp4", "scene_returns.mp4")
    return root


def mvbench_rows(task: str) -> list[dict[str, Any]]:
    row: dict[str, Any] = {"video": f"{task}_clip.mp4", "question": f"What happens in {task}?",
                           "candidates": ["it stops", "it moves", "it turns"], "answer": "it moves"}
    if task == "action_sequence":
        row.update(start=2.0, end=6.5)
    if task == "action_prediction":  # the main revision's json names the source video and its bound
        row.update(video="USNP1.mp4", start=1.3, end=15.4)
    return [row]


def make_mvbench(root: Path) -> Path:
    for task in TASKS:
        write_json(root / "json" / f"{task.name}.json", mvbench_rows(task.name))
    link_video(root / "video" / "star" / "Charades_v1_480" / "action_sequence_clip.mp4")  # full video + bound
    link_video(root / "video" / "clevrer" / "video_validation" / "object_existence_clip.mp4", "moving_object.mp4")
    link_video(root / "sta" / "sta_video_segment" / "action_localization_clip.mp4")  # pre-cut, at the top level
    link_video(root / "video" / "star" / "Charades_segment" / "USNP1_1.2999999999999998_15.4.mp4")  # pre-cut by bound
    link_video(root / "video" / "star" / "Charades_segment" / "USNP1_0.0_1.3.mp4")  # another cut of the same video
    return root


NEXTQA_ROWS = [
    {"video": 4010069381, "frame_count": 250, "width": 320, "height": 240, "question": "why did the square move ",
     "answer": 2, "qid": 6, "type": "CW", "a0": "to hide", "a1": "to eat", "a2": "it was pushed", "a3": "it fell",
     "a4": "it flew "},
    {"video": 4010069381, "frame_count": 250, "width": 320, "height": 240, "question": "what happened after the cut",
     "answer": 0, "qid": 7, "type": "TN", "a0": "a new scene", "a1": "the end", "a2": "a song", "a3": "a fade",
     "a4": "silence"},
]


def make_nextqa(root: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    write_parquet(root / "MC" / "test-00000-of-00001.parquet", NEXTQA_ROWS if rows is None else rows)
    link_video(root / "NExTVideo" / "4010069381.mp4", "moving_object.mp4")
    return root


JSONL_ROWS = [
    {"id": "cuts", "video": "clips/cuts.mp4", "question": "How many scenes?", "options": ["1", "2", "3"], "answer": "C",
     "category": "counting"},
    {"id": "move", "video": "clips/move.mp4", "question": "What moves?", "options": ["a square", "a circle"],
     "answer": 0},
]


def make_jsonl(root: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    path = root / "mine.jsonl"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in (JSONL_ROWS if rows is None else rows)), encoding="utf-8")
    link_video(root / "clips" / "cuts.mp4")
    link_video(root / "clips" / "move.mp4", "moving_object.mp4")
    return path


BUILDERS = {
    "videomme": make_videomme, "mlvu": make_mlvu, "longvideobench": make_longvideobench, "mvbench": make_mvbench,
    "nextqa": make_nextqa, "jsonl": make_jsonl,
}


@pytest.fixture
def bench_data(tmp_path: Path):
    """bench_data(name) -> the folder (or jsonl file) of benchmark `name`, built in a fresh tmp dir."""
    def build(name: str) -> Path:
        return BUILDERS[name](tmp_path / name)
    return build
