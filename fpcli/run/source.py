"""The model source of a run: `LazyModel` loads the command's model once, at its first use, and gets each clip's
features (the feature cache, or decoding and the vision tower).

The model loads lazily, when a clip first needs it: a video that is not in the feature cache is decoded first, so a
bad video is reported in a second, not after a minute of loading, and a batch whose items all fail never loads it;
a clip the cache holds loads the model and skips decoding. Decoding first needs the model's sampling rule and the
cache key the checkpoint's identity; a profile knows the rule, otherwise the spec is resolved (a folder: instant; a
hub id: the cache, or a download) and the load reuses that resolution. Right after the load, it checks the run's
methods against the model (a method the family cannot run, an option naming a layer the LLM lacks): a usage
error before any encoding. Messages and progress go to a `Reporter` (the CLI's prints them on stderr).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Protocol, Sequence

from fpcli.errors import Fatal
from fpcli.run.settings import CPU_DEFAULT, GPU_DEFAULT, MethodSetting, ModelSettings, RunSettings

if TYPE_CHECKING:
    from fpcli.model import ClipFeatures, ResolvedModel, VideoLLM
    from fpcli.model.cached_encode import Check, EncoderIdentity
    from fpcli.model.feature_cache import FeatureCache
    from fpcli.model.profiles import Progress
    from fpcli.model.sampling import SamplingRule
    from fpcli.video import VideoClip


class Reporter(Protocol):
    """Where a run's messages and progress go (fpcli.cli.progress.Reporter on the terminal)."""

    def message(self, text: str) -> None: ...

    @property
    def callback(self) -> Progress: ...


class QuietReporter:
    """A reporter that says nothing: a process with no terminal of its own (a Ray worker, lmms-eval's model)."""

    callback = None

    def message(self, text: str) -> None:
        pass


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


class LazyModel:
    """The command's model, loaded once at its first use (`get`); its sampling rule, layout and `identity` are known
    before that. `features` is the one call per clip: the feature cache, else decoding and the vision tower.
    `gpu_default` is the model used without --model when CUDA is there (a protocol may name its own). `methods`:
    the pruning settings every video of the command is answered with, which `check_methods` refuses before
    anything where the layout is known without loading, and the load checks against the model before any
    encoding."""

    def __init__(self, settings: ModelSettings, reporter: Reporter, vision_only: bool = False,
                 gpu_default: str = GPU_DEFAULT, cache: Optional[FeatureCache] = None,
                 methods: Sequence[MethodSetting] = (), max_pixels: Optional[int] = None) -> None:
        self.settings = settings
        self.methods = list(methods)
        self.max_pixels = max_pixels
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

    def check_methods(self, methods: Optional[Sequence[str]] = None) -> None:
        """InputError (exit 2) when one of `methods` (default: those of `self.methods`) cannot work on the model's
        family, or `max_pixels` is given to a family that does not take it, found without loading or downloading
        anything: where --layout, the profile or a local checkpoint's config says the layout (else the load's
        checks find it)."""
        from fpcli.errors import InputError
        from fpcli.model import known_layout
        from fpcli.model.methods import check_for_layout
        from fpcli.model.profiles import MAX_PIXELS_HINT, check_max_pixels

        layout = known_layout(self.spec, self.settings.layout)
        if layout is None and Path(self.spec).expanduser().is_dir():
            layout = self._resolve().layout  # a folder: its config.json, read at once
        if layout is None:
            return
        try:
            check_max_pixels(layout, self.max_pixels)
        except ValueError as exc:
            raise InputError(str(exc), hint=MAX_PIXELS_HINT) from None
        for method in methods if methods is not None else [setting.method for setting in self.methods]:
            try:
                check_for_layout(method, layout)
            except ValueError as exc:
                raise InputError(str(exc), hint="see `forestprune methods` for what each method needs") from None

    def _check_loaded(self, llm: VideoLLM) -> None:
        """`methods` against the loaded model (a layer option beyond its decoder, ...): ModelInputError."""
        if not self.vision_only:
            for setting in self.methods:
                llm.check_method(setting.method, setting.ratio, setting.options)

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
        with _fatal():  # a setting this model cannot run fails every video alike: the command ends here
            self._check_loaded(llm)
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
