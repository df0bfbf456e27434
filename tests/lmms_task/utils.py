"""The local tasks' functions: visuals from the repository's sample_videos/, the question as the prompt."""

from pathlib import Path

import av
from PIL import Image

VIDEOS = Path(__file__).resolve().parents[2] / "sample_videos"


def doc_to_video(doc: dict) -> list[str]:
    return [str(VIDEOS / doc["video"])]


def doc_to_image(doc: dict) -> list[Image.Image]:
    """The first frame of the document's video, as a picture."""
    with av.open(str(VIDEOS / doc["video"])) as container:
        frame = next(container.decode(video=0))
        return [frame.to_image()]


def doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    return doc["question"]


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return {"exact": float(results[0].strip().lower() == doc["answer"])}
