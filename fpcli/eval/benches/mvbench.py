"""MVBench, all 20 tasks (hub: OpenGVLab/MVBench, revision `video`).

Layout: json/<task>.json per task, rows with video, question, candidates, answer (the right
option's text) and, for the tasks cut from longer clips, start/end seconds; videos unpacked under
video/ (or the folder itself) in each task's source folder. lmms-eval (tasks/mvbench/utils.py,
DATA_LIST) reads pre-cut clips (star/Charades_segment, sta/sta_video_segment, ...) and ignores
start/end; the authors (llava/eval/model_mvbench.py, build_data_list) read the full videos
(star/Charades_v1_480, sta/sta_video) and sample inside [start, end]. Both folders are looked for,
the full-video one first: an item gets `time_bound` only when its video is a full-length clip. A
row naming its source video (USNP1.mp4, the `main` revision's json) finds its pre-cut clip by name
and bound (star/Charades_segment/USNP1_1.3_15.4.mp4).
The authors read episodic_reasoning from JPEG frame folders (tvqa/frames_fps3_hq); only its video
form (tvqa/video_fps3_hq_segment) is read here, so that task is always unbounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fpcli.eval.benches.files import field, find_file, read_rows
from fpcli.eval.errors import EvalInputError
from fpcli.eval.items import EvalItem, make_item


@dataclass(frozen=True)
class MVBenchTask:
    name: str  # json/<name>.json, and the item category
    segments: str  # lmms-eval's folder of (pre-cut) clips
    full: str | None = None  # the authors' folder of full-length videos with a time bound, if different


TASKS: tuple[MVBenchTask, ...] = (
    MVBenchTask("action_sequence", "star/Charades_segment", "star/Charades_v1_480"),
    MVBenchTask("action_prediction", "star/Charades_segment", "star/Charades_v1_480"),
    MVBenchTask("action_antonym", "ssv2_video_mp4"),
    MVBenchTask("fine_grained_action", "Moments_in_Time_Raw/videos"),
    MVBenchTask("unexpected_action", "FunQA_test/test"),
    MVBenchTask("object_existence", "clevrer/video_validation"),
    MVBenchTask("object_interaction", "star/Charades_segment", "star/Charades_v1_480"),
    MVBenchTask("object_shuffle", "perception/videos"),
    MVBenchTask("moving_direction", "clevrer/video_validation"),
    MVBenchTask("action_localization", "sta/sta_video_segment", "sta/sta_video"),
    MVBenchTask("scene_transition", "scene_qa/video"),
    MVBenchTask("action_count", "perception/videos"),
    MVBenchTask("moving_count", "clevrer/video_validation"),
    MVBenchTask("moving_attribute", "clevrer/video_validation"),
    MVBenchTask("state_change", "perception/videos"),
    MVBenchTask("fine_grained_pose", "nturgbd_convert"),
    MVBenchTask("character_order", "perception/videos"),
    MVBenchTask("egocentric_navigation", "vlnqa"),
    MVBenchTask("episodic_reasoning", "tvqa/video_fps3_hq_segment"),
    MVBenchTask("counterfactual_inference", "clevrer/video_validation"),
)


def _roots(data: Path, folder: str) -> list[Path]:
    roots = [data / "video" / folder, data / folder]
    if folder.split("/")[0] in ("clevrer", "star"):  # lmms-eval's fallback for the 0613 re-upload
        roots.append(data / "data0613" / folder)
    return roots


class _Segments:
    """The pre-cut clips of a folder by source video: `<stem>_<start>_<end>.mp4` (star/Charades_segment in
    the `video` revision), for rows that name the source video and its bound (the `main` revision's json)."""

    def __init__(self) -> None:
        self._by_root: dict[Path, dict[str, list[tuple[float, float, Path]]]] = {}

    def find(self, root: Path, name: str, bound: tuple[float, float]) -> Path | None:
        if root not in self._by_root:
            clips: dict[str, list[tuple[float, float, Path]]] = {}
            for path in sorted(root.glob("*.mp4")) if root.is_dir() else []:
                parts = path.stem.rsplit("_", 2)
                try:
                    clips.setdefault(parts[0], []).append((float(parts[1]), float(parts[2]), path))
                except (IndexError, ValueError):
                    continue
            self._by_root[root] = clips
        for start, end, path in self._by_root[root].get(Path(name).stem, []):
            if abs(start - bound[0]) <= 1e-6 and abs(end - bound[1]) <= 1e-6:
                return path
        return None


def _video(data: Path, task: MVBenchTask, name: str, bound: tuple[float, float] | None, segments: _Segments):
    """(path, time_bound): the full-length video with its bound if present, else the pre-cut clip
    (named as in the row, or after the row's source video and bound)."""
    if task.full is not None and bound is not None:
        for root in _roots(data, task.full):
            if (root / name).is_file():
                return root / name, bound
    for root in _roots(data, task.segments):
        if (root / name).exists():
            return root / name, None
        clip = None if bound is None else segments.find(root, name, bound)
        if clip is not None:
            return clip, None
    return _roots(data, task.segments)[0] / name, None


def _bound(row: dict, source: Path, index: int) -> tuple[float, float] | None:
    if row.get("start") is None or row.get("end") is None:
        return None
    try:
        return float(row["start"]), float(row["end"])
    except (TypeError, ValueError):
        raise EvalInputError(f"row {index} has a start/end that is not a number", source) from None


def load(data: Path) -> list[EvalItem]:
    find_file(data, "mvbench", ["json/*.json"])  # a folder without json/ at all: say what is expected
    items = []
    segments = _Segments()
    for task in TASKS:
        source = find_file(data, "mvbench", [f"json/{task.name}.json"])
        for i, row in enumerate(read_rows(source)):
            options = [str(c) for c in field(row, "candidates", source, i)]
            video, bound = _video(data, task, str(field(row, "video", source, i)), _bound(row, source, i), segments)
            items.append(make_item(
                id=f"{task.name}_{i}",
                bench="mvbench",
                video=video,
                question=field(row, "question", source, i),
                options=options,
                answer=field(row, "answer", source, i),
                source=str(source),
                answer_is_text=True,
                category=task.name,
                time_bound=bound,
            ))
    return items
