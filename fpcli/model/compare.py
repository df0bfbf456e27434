"""Several pruning methods answering one question about one clip: the paper's efficiency comparison (its Fig. 4).

The clip is encoded once; each method then opens its own session on those features (`VideoLLM.start`: pruned
before the LLM, or inside it) and answers, so the methods differ only in what they do to the visual tokens. Each
method's peak-memory window opens after the encoding, so the column compares the pruning and the LLM's work.
The encode time is the shared encoding's, on every method's result: what its answer cost end to end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Optional

from fpcli.model.generate import GenerationConfig
from fpcli.model.methods import pruning_for
from fpcli.model.oom import out_of_memory_is_model_error
from fpcli.model.profiles import Progress
from fpcli.model.result import AnswerResult
from fpcli.model.timing import reset_peak_memory

if TYPE_CHECKING:
    from fpcli.model.base import VideoLLM


@dataclass
class Comparison:
    """One AnswerResult per method, in the order asked, all from the same encoded frames."""

    video: str
    question: str
    results: list[AnswerResult]
    frame_size: tuple[int, int] | None = None  # what the tower saw (VideoLLM.frame_size), for pictures

    def to_dict(self) -> dict:
        return {"video": self.video, "question": self.question, "methods": [r.to_dict() for r in self.results]}


def compare_methods(
    llm: VideoLLM,
    clip: Any,
    question: str,
    methods: Mapping[str, Mapping[str, Any]],
    *,
    ratio: float | None,
    generation: Optional[GenerationConfig] = None,
    decode_s: float = 0.0,
    progress: Optional[Progress] = None,
    time_instruction: bool | None = None,
    system_prompt: str | None = None,
    max_pixels: int | None = None,
    budget: int | None = None,
) -> Comparison:
    """Answer `question` about `clip` with each method (name -> its options) at `ratio`, or keeping `budget` visual
    tokens (`none` keeps them all).

    Every method's prompt is checked against the context before the one encoding."""
    if not methods:
        raise ValueError("compare_methods needs at least one method")
    fit = {"time_instruction": time_instruction, "system_prompt": system_prompt}
    for name, options in methods.items():
        pruning = dict(zip(("ratio", "budget"), pruning_for(name, ratio, budget)))
        llm.check_fits(len(clip.frames), question, method=name, clip=clip, options=options, max_pixels=max_pixels,
                       **pruning, **fit)
    features = llm.encode_clip(clip, progress, decode_s=decode_s, max_pixels=max_pixels)
    results = []
    for name, options in methods.items():
        reset_peak_memory(llm.device)
        with out_of_memory_is_model_error(f"answering with {name} about", features.frames):
            session = llm.start(features, method=name, options=dict(options),
                                **dict(zip(("ratio", "budget"), pruning_for(name, ratio, budget))))
            results.append(session.ask(question, generation or GenerationConfig(), **fit))
    return Comparison(video=str(clip.path), question=question, results=results, frame_size=llm.frame_size(features))
