"""cached_features: a clip's features from the feature cache when it has them, else decoded, encoded and stored.

    features = cached_features(llm, Path("clip.mp4"), {"num_frames": 8}, cache_from_env())
    session = llm.start(features, ratio=0.9, method="forestprune")

A hit skips decoding and the vision tower entirely. The key is the video file's identity, the sampling keyword
arguments, the checkpoint's identity, the layout, the dtype and the device type (a GPU's kernels round differently
from a CPU's, and a hit must give the features this run would have computed).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from fpcli.model.clip_features import ClipFeatures
from fpcli.model.feature_cache import FeatureCache, cache_key, checkpoint_identity
from fpcli.model.profiles import Progress
from fpcli.model.timing import now
from fpcli.video import VideoClip, sample_frames


def dtype_name(dtype) -> str:
    """torch.bfloat16 -> 'bfloat16'."""
    return str(dtype).removeprefix("torch.")


def feature_key(llm, video: Path, sampling: dict) -> str:
    """The cache key of `video` sampled with `sampling` and encoded by `llm` (raises OSError for an unreadable file).

    `llm` is read for .path, .layout, .dtype and .device only, so the key can be known before the model is loaded.
    """
    return cache_key(
        video,
        sampling,
        checkpoint_identity(llm.path),
        llm.layout,
        dtype_name(llm.dtype),
        extra={"device": llm.device.type},
    )


def cached_features(
    llm,
    video: Path,
    sampling: dict,
    cache: FeatureCache | None,
    decode: Callable[..., VideoClip] = sample_frames,
    progress: Progress | None = None,
) -> ClipFeatures:
    """The features of `video` sampled by `decode(video, **sampling, progress=progress)` and `llm.encode_clip`.

    `cache` None means no cache ("off"). Warnings the cache gives during this call land in `.warnings`.
    """
    key = None
    seen = 0
    if cache is not None:
        seen = len(cache.warnings)
        try:
            key = feature_key(llm, video, sampling)
        except OSError:
            key = None  # not readable: decoding below says what is wrong with the file, in the video layer's words
    if key is not None:
        start = time.perf_counter()
        entry = cache.get(key)
        if entry is not None:
            tensors, meta = entry
            features = ClipFeatures.from_parts({name: t.to(llm.device) for name, t in tensors.items()}, meta)
            # What describes this run, not the one that stored the entry: the name it was given, no decoding or
            # encoding, and only the warnings of this load.
            features.video = str(video)
            features.decode_s = features.encode_s = 0.0
            features.cache = "hit"
            features.warnings = list(cache.warnings[seen:])
            features.cache_load_s = now(llm.device) - start
            return features
    start = time.perf_counter()
    clip = decode(video, **sampling, progress=progress)
    decode_s = time.perf_counter() - start
    features = llm.encode_clip(clip, progress=progress)
    features.decode_s = decode_s
    features.cache = "off" if key is None else "miss"
    if key is not None:
        cache.put(key, features.tensors(), features.meta())
    if cache is not None:
        features.warnings.extend(cache.warnings[seen:])
    return features
