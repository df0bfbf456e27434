"""The command runner: what every command does around its real work. Expand the VIDEO arguments, get each clip's
features (the feature cache, or decoding and the vision tower), load the model once, and go through the videos,
printing each result (and its warnings) as it comes.

The model loads lazily, when a clip first needs it: a video that is not in the feature cache is decoded first, so a
bad video is reported in a second, not after a minute of loading, and a batch whose items all fail never loads it;
a clip the cache holds loads the model and skips decoding. Decoding first needs the model's sampling rule and the
cache key the checkpoint's identity; a profile knows the rule, otherwise the spec is resolved (a folder: instant; a
hub id: the cache, or a download) and the load reuses that resolution.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.rule import Rule
from rich.text import Text

from fpcli.cli.errors import EXIT_FAILURE, Fatal, describe, report, usage_error
from fpcli.cli.options import CPU_DEFAULT, GPU_DEFAULT
from fpcli.cli.progress import Reporter
from fpcli.cli.settings import ModelSettings, RunSettings

if TYPE_CHECKING:
    from fpcli.model import ClipFeatures, ResolvedModel, VideoLLM
    from fpcli.model.cached_encode import Check, EncoderIdentity
    from fpcli.model.feature_cache import FeatureCache
    from fpcli.model.sampling import SamplingRule
    from fpcli.video import VideoClip


def expand_videos(paths: list[Path]) -> list[Path]:
    """Files as given, folders as their video files (sorted); checked before any model loads."""
    from fpcli.video import VIDEO_EXTENSIONS, list_videos

    videos: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = list_videos(path)
            if not found:
                looked_for = " ".join(sorted(VIDEO_EXTENSIONS))
                raise usage_error("no video files in folder", path, hint=f"looked for {looked_for}")
            videos.extend(found)
        elif path.exists():
            videos.append(path)
        else:
            raise usage_error("no such file or folder", path)
    return videos


def default_model(device: str, reporter: Reporter, gpu_default: str = GPU_DEFAULT) -> str:
    """`gpu_default` (llava-video-7b) when CUDA can be used, llava-ov-0.5b otherwise; says which on stderr."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        reporter.message(f"No --model given: using {gpu_default} (CUDA is available).")
        return gpu_default
    reporter.message(f"No --model given: using {CPU_DEFAULT} (no CUDA device; {gpu_default} needs a GPU).")
    return CPU_DEFAULT


@contextlib.contextmanager
def _fatal() -> Iterator[None]:
    """A model that cannot be resolved or loaded ends the command (see errors.Fatal)."""
    try:
        yield
    except Exception as exc:
        raise Fatal(str(exc)) from exc


def feature_cache(no_cache: bool, max_size: Optional[str]) -> Optional[FeatureCache]:
    """The command's feature cache: None with --no-cache or FORESTPRUNE_NO_CACHE=1; a bad size is a usage error
    (exit 2) before any work. Its warnings (a broken entry, a read-only directory) reach the results' warnings."""
    from fpcli.model.feature_cache import cache_from_env

    return cache_from_env(enabled=not no_cache, max_size=max_size)


class LazyModel:
    """The command's model, loaded once at its first use (`get`); its sampling rule, layout and `identity` are known
    before that. `features` is the one call per clip: the feature cache, else decoding and the vision tower.
    `gpu_default` is the model used without --model when CUDA is there (a protocol may name its own)."""

    def __init__(self, settings: ModelSettings, reporter: Reporter, vision_only: bool = False,
                 gpu_default: str = GPU_DEFAULT, cache: Optional[FeatureCache] = None) -> None:
        self.settings = settings
        self.reporter = reporter
        self.vision_only = vision_only
        self.gpu_default = gpu_default
        self.cache = cache
        self._spec: Optional[str] = settings.model
        self._resolved: Optional[ResolvedModel] = None
        self._llm: Optional[VideoLLM] = None
        self._load_reported = False

    @property
    def spec(self) -> str:
        if self._spec is None:
            self._spec = default_model(self.settings.device, self.reporter, self.gpu_default)
        return self._spec

    def sampling_rule(self) -> SamplingRule:
        """How the model samples a clip by default (its layout's rule, the profile's frame count); no weights are
        read, and a checkpoint is resolved only when neither a profile nor --layout says."""
        from fpcli.model import known_default_frames, known_layout
        from fpcli.model.sampling import sampling_rule

        if self._llm is not None:
            return sampling_rule(self._llm.layout, self._llm.default_frames)
        layout = known_layout(self.spec, self.settings.layout)
        frames = known_default_frames(self.spec, self.settings.layout)
        if layout is not None and frames is not None:
            return sampling_rule(layout, frames)
        resolved = self._resolve()
        return sampling_rule(resolved.layout, resolved.default_frames)

    @property
    def layout(self) -> str:
        """--layout, else the profile's, else the checkpoint's (resolving it); no weights are read."""
        from fpcli.model import known_layout

        if self._llm is not None:
            return self._llm.layout
        layout = known_layout(self.spec, self.settings.layout)
        return layout if layout is not None else self._resolve().layout

    def _resolve(self) -> ResolvedModel:
        from fpcli.model import resolve_model

        if self._resolved is None:
            with _fatal():
                self._resolved = resolve_model(self.spec, self.settings.layout, progress=self.reporter.callback)
        return self._resolved

    def identity(self) -> EncoderIdentity:
        """What the feature cache keys on besides the clip (checkpoint, layout, dtype, device); no weights read."""
        from fpcli.model.cached_encode import EncoderIdentity

        if self._llm is not None:
            return EncoderIdentity.of(self._llm, self.settings.attn)
        resolved = self._resolve()
        with _fatal():
            return EncoderIdentity.planned(resolved, self.settings.device, self.settings.dtype, self.settings.attn)

    def features(self, video: Path, settings: RunSettings, *, check: Optional[Check] = None,
                 decoded: Optional[list[VideoClip]] = None) -> ClipFeatures:
        """The clip's features (fpcli.model.cached_encode.features_for): from the cache, loading the model first;
        else decoded by the sampling rule (before the model loads), then encoded and stored. `check` runs before
        any encoding; `decoded` gets the clip when one was decoded (a picture needs its frames)."""
        from fpcli.model.cached_encode import features_for
        from fpcli.model.sampling import sample_clip, sampling_options

        options = sampling_options(settings.frames, settings.fps, self.sampling_rule)
        if "fps" in options and settings.frames is None:  # the rule's fewest-frames fallback decides the clip too
            options["min_frames"] = self.sampling_rule().min_frames

        def decode(path: Path, progress=None, **_: Any) -> VideoClip:  # by the rule; `options` is what keys it
            clip = sample_clip(path, self.sampling_rule, settings.frames, settings.fps, progress=progress)
            if decoded is not None:
                decoded.append(clip)
            return clip

        cache, identity = self.cache, None
        if cache is not None:
            try:
                identity = self.identity()
            except Fatal:  # unresolvable model (offline, not downloaded): decode first, a bad video says so, then
                cache = None  # the load fails the command
        return features_for(video, options, cache, self.get, identity=identity, check=check, decode=decode,
                            max_pixels=settings.max_pixels, progress=self.reporter.callback)

    def get(self) -> VideoLLM:
        """The loaded model: loaded on the first call, the same object after."""
        if self._llm is not None:
            return self._llm
        from fpcli.model import load_model

        with _fatal():
            llm = load_model(
                self._resolved or self.spec,
                layout=self.settings.layout,
                device=self.settings.device,
                dtype=self.settings.dtype,
                attn=self.settings.attn,
                vision_only=self.vision_only,
                progress=self.reporter.callback,
            )
        part = "vision tower of " if self.vision_only else ""
        dtype = str(llm.dtype).removeprefix("torch.")
        self.reporter.message(
            f"Loaded {part}{llm.name} ({llm.layout} layout) on {llm.device}, {dtype}, in {llm.load_s:.1f} s."
        )
        self._llm = llm
        return llm

    def load_s_once(self) -> float:
        """The load time for the first result that reports it, 0.0 after: the totals of several videos add up.
        The one place load time enters a result (the model layer reports load 0)."""
        if self._load_reported or self._llm is None:
            return 0.0
        self._load_reported = True
        return self._llm.load_s


def decode(video: Path, settings: RunSettings, model: LazyModel, reporter: Reporter) -> tuple[VideoClip, float]:
    """The sampled clip and the seconds it took, by the model's sampling rule (fpcli.model.sampling); no model
    loads for it (a profile knows its rule)."""
    from fpcli.model.sampling import sample_clip

    start = time.perf_counter()
    clip = sample_clip(video, model.sampling_rule, settings.frames, settings.fps, progress=reporter.callback)
    return clip, time.perf_counter() - start


def warn(result: dict[str, Any]) -> None:
    """The video layer's warnings of a result, on stderr whatever --quiet says: they change what was measured."""
    for warning in result.get("warnings", []):
        print(f"Warning: {warning} ({result['video']})", file=sys.stderr)


Result = dict[str, Any] | list[dict[str, Any]]  # one JSON-form result of a video, or several (ask --compare)


def each_video(paths: list[Path], work: Callable[[Path], Result], show: Callable[[Console, Result], None],
               json_output: bool, debug: bool, reporter: Reporter) -> None:
    """`work` on each video; each result printed as it comes: JSON lines (one per result of a video), or under a
    rule (several videos) by `show`.

    A video that fails is reported and the others go on (exit code 1 at the end); a model that cannot load
    (errors.Fatal) ends the command at once. With --json over several videos, stderr gets a line per video and
    the ok/failed count at the end, as stdout holds only the JSON lines.
    """
    out = Console(highlight=False, soft_wrap=True)
    counting = json_output and len(paths) > 1
    failed = 0
    start = time.perf_counter()
    for number, path in enumerate(paths, 1):
        where = f"[{number}/{len(paths)}] {path}"
        video_start = time.perf_counter()
        try:
            result = work(path)
        except Fatal:
            raise
        except Exception as exc:
            failed += 1
            if counting and not debug:
                message, hint, _ = describe(exc)
                print(f"failed {where}: {message}" + (f"\nHint: {hint}" if hint else ""), file=sys.stderr)
            else:
                report(exc, debug)
            continue
        results = result if isinstance(result, list) else [result]
        warn(results[0])  # the video's warnings, the same on each of its results
        if json_output:
            for one in results:
                print(json.dumps(one, ensure_ascii=False), flush=True)
            if counting:
                reporter.message(f"ok     {where} ({time.perf_counter() - video_start:.1f} s)")
            continue
        if len(paths) > 1:
            out.print(Rule(Text(str(path)), align="left"))  # Text: a [..] in a path is not markup
        show(out, result)
    if counting:
        print(f"Done: {len(paths) - failed} ok, {failed} failed ({len(paths)} videos) in "
              f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
    if failed:
        raise typer.Exit(EXIT_FAILURE)
