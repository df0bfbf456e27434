"""The `forestprune` model of lmms-eval: its requests answered by `forestprune ask`'s code path, a video encoded once.

lmms-eval hands `generate_until` every generation request of a run (all its tasks) at once, each with the request's
text, its generation kwargs and a `doc_to_visual` that gives the document's video paths (or images). The requests
are grouped by their visual: each video's features come once (the feature cache, or decoding and the vision tower:
the model source of fpcli.run, as the CLI gets them, so a clip `forestprune ask` encoded is a hit), each group runs
one session (fpcli.model.session_pool: the prefix with the visual tokens prefilled once) and asks every question of
the group in it (`session.ask(text, GenerationConfig(...))`). With
greedy decoding an answer is then `forestprune ask VIDEO "<text>"`'s answer with the same settings, cut at the first
`until` string. The answers go back in lmms-eval's order, each with its token counts for the sample log.

Multi-GPU: under `accelerate launch` each process loads its own model on its own device (device=auto: accelerate's,
cuda:<local rank>; device=cuda: the current device, which accelerate sets to the local rank) and answers the
requests lmms-eval gives its rank; rank and world size are accelerate's.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np
from accelerate import Accelerator
from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.api.model import lmms
from PIL import Image
from tqdm import tqdm

from fpcli.errors import Fatal, InputError
from fpcli.eval.loop import Counts
from fpcli.lmms.args import ModelArgs, ModelArgsError, parse_model_args
from fpcli.model import ClipFeatures, GenerationConfig, VideoLLM
from fpcli.model.feature_cache import cache_from_env
from fpcli.model.session_pool import SessionPool
from fpcli.run.settings import ModelSettings, RunSettings
from fpcli.run.source import LazyModel, QuietReporter
from fpcli.video import VideoClip

# HF generate's temperature when do_sample is set without one
SAMPLING_TEMPERATURE = 1.0


@dataclass
class PrunedTokenCounts(TokenCounts):
    """lmms-eval's per-sample token counts (the prompt entering the LLM, the tokens generated) plus the visual
    tokens before and after pruning, which its sample log writes through `to_dict`."""

    visual_before: Optional[int] = None
    visual_after: Optional[int] = None

    def to_dict(self) -> dict[str, Optional[int]]:
        return {**super().to_dict(), "visual_before": self.visual_before, "visual_after": self.visual_after}


@dataclass(frozen=True)
class Request:
    """One generation request: its position in lmms-eval's list, its text and kwargs, and its one visual."""

    index: int
    text: str
    kwargs: dict[str, Any]
    visual: Union[str, Callable[[], Image.Image]]  # a video path, or what gives the image (not held: memory)
    where: str  # "task/split#doc_id", for messages


def cut_at_stop(text: str, until: list[str]) -> str:
    """`text` up to the first occurrence of any of the `until` strings."""
    ends = [text.find(stop) for stop in until if stop]
    return text[: min((end for end in ends if end >= 0), default=len(text))]


def generation_config(kwargs: dict[str, Any], run: RunSettings) -> GenerationConfig:
    """lmms-eval's generation kwargs as ours: greedy unless do_sample (then the temperature, HF's 1.0 if none);
    max_new_tokens the task's, else `ask`'s default; `ask`'s seed."""
    temperature = float(kwargs.get("temperature") or 0.0)
    if kwargs.get("do_sample"):
        temperature = temperature or SAMPLING_TEMPERATURE
    else:
        temperature = 0.0
    max_new_tokens = kwargs.get("max_new_tokens") or run.max_new_tokens
    return GenerationConfig(max_new_tokens=int(max_new_tokens), temperature=temperature, seed=run.seed)


def picture_clip(image: Image.Image, name: str) -> VideoClip:
    """An image as a one-frame clip (how the model sees a picture)."""
    frames = np.asarray(image.convert("RGB"))[None]  # [1, H, W, 3]
    return VideoClip(path=name, frames=frames, indices=np.zeros(1, dtype=np.int64), timestamps=np.zeros(1),
                     fps=1.0, duration=1.0, total_frames=1)


class Forestprune(lmms):
    """lmms-eval's `forestprune` model (see the module docstring); `--model_args` are fpcli.lmms.args's."""

    is_simple = True

    def __init__(self, **model_args: Any) -> None:
        super().__init__()
        self.args: ModelArgs = parse_model_args(model_args)
        self.accelerator = Accelerator()
        device = self.args.device
        if self.accelerator.num_processes > 1 and device == "auto":
            device = str(self.accelerator.device)  # each process its own: cuda:<local rank>, or cpu
        self._rank = self.accelerator.process_index
        self._world_size = self.accelerator.num_processes
        run = self.args.run
        settings = ModelSettings(self.args.pretrained, self.args.layout, device, self.args.dtype, self.args.attn)
        # the model source `forestprune ask` uses: --model's resolution, the feature cache's keys, the checks of the
        # method against the model's family (before any weight loads) and against the loaded model
        self.source = LazyModel(settings, QuietReporter(), cache=cache_from_env(), max_pixels=run.max_pixels,
                                methods=[] if self.args.budget is not None else run.method_settings())
        try:
            self.source.check_methods([run.method])
            self.llm: VideoLLM = self.source.get()
        except (ValueError, InputError, Fatal) as exc:  # a setting the model cannot take, or cannot load
            raise ModelArgsError(str(exc)) from None
        print(f"forestprune: loaded {self.llm.name} ({self.llm.layout} layout) on {self.llm.device} in "
              f"{self.llm.load_s:.1f} s", file=sys.stderr)
        self.counts = Counts()
        self.cache_hits = 0  # clips whose features the feature cache held (no decoding, no vision tower)

    @property
    def device(self):
        return self.llm.device

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        raise NotImplementedError(
            "forestprune answers generate_until tasks only; loglikelihood (multiple-choice scoring by likelihood) "
            "would need the pruned prompt's logits over each choice, which it does not compute"
        )

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError("forestprune answers generate_until tasks only, not multi-round ones")

    def generate_until(self, requests: list[Instance]) -> list[GenerationResult]:
        """Each request's answer, in the order given; requests about one visual share its encoding and session."""
        groups: dict[Any, list[Request]] = {}
        for index, instance in enumerate(requests):
            request = self._request(index, instance)
            key = request.visual if isinstance(request.visual, str) else ("image", request.where)
            groups.setdefault(key, []).append(request)
        answers: list[Optional[GenerationResult]] = [None] * len(requests)
        before, hits, failed, start = Counts(**self.counts.to_dict()), self.cache_hits, 0, time.perf_counter()
        with tqdm(total=len(requests), disable=self.rank != 0, desc="forestprune") as bar:
            for group in groups.values():
                for request, answer in zip(group, self._answer_group(group)):
                    if isinstance(answer, Exception):
                        failed += 1
                        print(f"forestprune: {request.where} failed: {answer}", file=sys.stderr)
                        answer = GenerationResult(text="")
                    answers[request.index] = answer
                    bar.update(1)
        done = self.counts.since(before)
        print(f"forestprune: {len(requests)} requests, {len(groups)} visuals, {done.videos_encoded} encoded "
              f"({self.cache_hits - hits} from the feature cache), {done.prefills} prefix prefills, "
              f"{failed} failed, in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        return answers

    def _request(self, index: int, instance: Instance) -> Request:
        text, kwargs, doc_to_visual, doc_id, task, split = instance.args
        where = f"{task}/{split}#{doc_id}"
        visuals = [v for v in doc_to_visual(self.task_dict[task][split][doc_id]) if v is not None]
        if len(visuals) != 1 or not isinstance(visuals[0], (str, os.PathLike, Image.Image)):
            kinds = ", ".join(type(v).__name__ for v in visuals) or "none"
            raise ValueError(f"forestprune answers about one video or one image a request; {where} gives {kinds}")
        if isinstance(visuals[0], Image.Image):  # not held (a task of thousands): the document is read again
            docs = self.task_dict[task][split]
            return Request(index, text, kwargs, lambda: next(v for v in doc_to_visual(docs[doc_id]) if v is not None),
                           where)
        return Request(index, text, kwargs, os.fspath(visuals[0]), where)

    def _answer_group(self, group: list[Request]) -> Iterator[GenerationResult | Exception]:
        """The answers of requests about one visual: its features once, one session, every question asked in it."""
        try:
            features = self._features(group[0].visual, group[0].where)
            run, budget = self.args.run, self.args.budget
            if budget is not None:  # a clip with fewer tokens than the budget keeps them all
                budget = min(budget, features.tokens)
            ratio = None if budget is not None else run.prune_ratio
            session = SessionPool(self.llm, features).session(run.method, ratio, run.prune_options(), budget)
        except Exception as exc:  # a broken video, a tower out of memory: every request of the group fails
            for _ in group:
                yield exc
            return
        prefills = session.prefills
        for request in group:
            try:
                session.check_fits(request.text)
                result = session.ask(request.text, generation_config(request.kwargs, self.args.run))
            except Exception as exc:  # a prompt longer than the context: this request alone
                yield exc
                continue
            self.counts.questions += 1
            self.counts.prefills += session.prefills - prefills
            prefills = session.prefills
            until = request.kwargs.get("until") or []
            tokens = result.tokens
            yield GenerationResult(
                text=cut_at_stop(result.answer, [until] if isinstance(until, str) else list(until)),
                token_counts=PrunedTokenCounts(input_tokens=tokens.prompt, output_tokens=tokens.generated,
                                               visual_before=tokens.visual_before, visual_after=tokens.visual_after),
            )

    def _features(self, visual: Union[str, Callable[[], Image.Image]], where: str) -> ClipFeatures:
        """A video's features as `forestprune ask` gets them (same sampling options, so the same cache key); an
        image's as a one-frame clip, not cached (it has no file)."""
        if not isinstance(visual, str):
            self.counts.videos_encoded += 1
            return self.llm.encode_clip(picture_clip(visual(), where), max_pixels=self.args.run.max_pixels)
        features = self.source.features(Path(visual), self.args.run)
        hit = features.cache == "hit"
        self.counts.videos_encoded += not hit
        self.cache_hits += hit
        return features
