"""features_for: a clip's features from the feature cache when it has them, else decoded, encoded and stored.

    features = features_for(Path("clip.mp4"), {"num_frames": 8}, cache_from_env(), lambda: llm)
    session = llm.start(features, ratio=0.9, method="forestprune")

A hit skips decoding and the vision tower entirely. The key is the video file's identity, the sampling keyword
arguments, and the encoder's identity (`EncoderIdentity`): checkpoint, layout, dtype, device type and attention
implementation (a GPU's kernels, or another attention kernel, round differently, and a hit must give the features
this run would have computed).

The model is asked for (`load()`) only when it is needed, so that a caller holding a model that is not loaded yet
gets the order a user wants: on a likely hit the model loads first and nothing is decoded; on a miss the video is
decoded first (a bad video is reported in a second, not after a minute of loading), then the model loads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from fpcli.model.clip_features import ClipFeatures
from fpcli.model.feature_cache import FeatureCache, cache_key, checkpoint_identity
from fpcli.model.base import VideoLLM
from fpcli.model.profiles import Progress, ResolvedModel
from fpcli.model.timing import now, reset_peak_memory
from fpcli.video import VideoClip, sample_frames

# Called with the loaded model, the clip's frame count and the clip (or its features: .duration, .timestamps)
# before any encoding: e.g. VideoLLM.check_fits, so that a question too long for the context costs no tower time.
Check = Callable[[VideoLLM, int, Any], None]


@dataclass(frozen=True)
class EncoderIdentity:
    """What decides a clip's features besides the video and its sampling; known before the model loads."""

    path: Path  # the resolved checkpoint directory
    layout: str
    dtype: str  # "float32", "bfloat16", ...
    device: str  # the device type: "cpu", "cuda"
    attn: str  # the vision tower's attention implementation

    @classmethod
    def of(cls, llm: VideoLLM, attn: Optional[str] = None) -> EncoderIdentity:
        """The identity of a loaded model; `attn` is the implementation it was loaded with (default: what its
        tower's config says), so that a caller that planned the identity before loading keys the same after."""
        attn = attn or getattr(llm.vision_tower.config, "_attn_implementation", None) or "sdpa"
        return cls(Path(llm.path), llm.layout, dtype_name(llm.dtype), llm.device.type, attn)

    @classmethod
    def planned(cls, resolved: ResolvedModel, device: str, dtype: str, attn: str) -> EncoderIdentity:
        """The identity `load_model(resolved, device=, dtype=, attn=)` will have, without loading it (raises the
        load's ModelError for a device that cannot be used)."""
        from fpcli.model.checkpoint import resolve_device, resolve_dtype

        torch_device = resolve_device(device)
        return cls(Path(resolved.path), resolved.layout, dtype_name(resolve_dtype(dtype, torch_device)),
                   torch_device.type, attn)


def dtype_name(dtype) -> str:
    """torch.bfloat16 -> 'bfloat16'."""
    return str(dtype).removeprefix("torch.")


def feature_key(identity: EncoderIdentity, video: Path, sampling: dict, max_pixels: Optional[int] = None) -> str:
    """The cache key of `video` sampled with `sampling` and encoded by `identity` (with Qwen-VL's per-frame pixel
    budget `max_pixels`, None: the checkpoint's); OSError for an unreadable file."""
    extra = {"device": identity.device, "attn": identity.attn}
    if max_pixels is not None:
        extra["max_pixels"] = int(max_pixels)
    return cache_key(video, sampling, checkpoint_identity(identity.path), identity.layout, identity.dtype, extra=extra)


def features_for(
    video: Path,
    sampling: dict,
    cache: Optional[FeatureCache],
    load: Callable[[], VideoLLM],
    *,
    identity: Optional[EncoderIdentity] = None,
    check: Optional[Check] = None,
    decode: Callable[..., VideoClip] = sample_frames,
    max_pixels: Optional[int] = None,
    progress: Optional[Progress] = None,
) -> ClipFeatures:
    """The features of `video` sampled by `decode(video, **sampling, progress=progress)` and encoded by `load()`.

    `cache` None means no cache ("off"). `identity` is the encoder's identity when the model may not be loaded yet
    (default: that of `load()`, which then loads it). `check` runs before encoding (and on a hit). `max_pixels` goes
    to `encode_clip` (Qwen-VL's pixel budget) and into the key. The CUDA peak memory window starts here. Warnings the cache gives during this call land in `.warnings`, after the clip's own.
    """
    key = None
    seen = 0
    if cache is not None:
        seen = len(cache.warnings)
        try:
            key = feature_key(identity or EncoderIdentity.of(load()), video, sampling, max_pixels)
        except OSError:
            key = None  # not readable: decoding below says what is wrong with the file, in the video layer's words
    if key is not None and cache.contains(key):
        features = _load_entry(cache, key, load(), video)
        if features is not None:
            if check is not None:
                check(load(), features.frames, features)
            features.warnings.extend(cache.warnings[seen:])
            return features
    start = time.perf_counter()
    clip = decode(video, **sampling, progress=progress)
    decode_s = time.perf_counter() - start
    llm = load()
    if check is not None:
        check(llm, len(clip.frames), clip)
    reset_peak_memory(llm.device)
    features = llm.encode_clip(clip, progress, decode_s=decode_s, max_pixels=max_pixels)
    if key is not None:
        features.cache = "miss"
        # the model and the video's full path: what `forestprune cache list` shows and `cache rm` matches
        cache.put(key, features.tensors(), {**features.meta(), "model": llm.name, "path": str(Path(video).resolve())})
    if cache is not None:
        features.warnings.extend(cache.warnings[seen:])
    return features


def _load_entry(cache: FeatureCache, key: str, llm: VideoLLM, video: Path) -> Optional[ClipFeatures]:
    """The entry of `key` on the model's device as this run's features, or None (a broken entry: a miss)."""
    reset_peak_memory(llm.device)
    start = time.perf_counter()
    entry = cache.get(key)
    if entry is None:
        return None
    tensors, meta = entry
    features = ClipFeatures.from_parts({name: t.to(llm.device) for name, t in tensors.items()}, meta)
    # What describes this run, not the one that stored the entry: the name the video was given, no decoding or
    # encoding, the load's time. The clip's own warnings (a cut-short file, capped frames) stay: they still hold.
    features.video = str(video)
    features.decode_s = features.encode_s = 0.0
    features.cache = "hit"
    features.cache_load_s = now(llm.device) - start
    return features
