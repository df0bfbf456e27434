"""The feature cache's entries as `forestprune cache list` shows them and `cache rm PATTERN` picks them: each
entry's video, frames, model, size and last use, read from its safetensors header only (no tensor is loaded).
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from fpcli.model.feature_cache import FeatureCache, FeatureCacheError

_HEADER_LIMIT = 2**20  # an entry's JSON header is a few kB; more is not an entry of ours


@dataclass(frozen=True)
class CacheEntry:
    """One entry; video, frames and model are None where its header does not say (an older or broken entry)."""

    path: Path
    video: Optional[str]
    frames: Optional[int]
    model: Optional[str]
    bytes: int
    last_used_ns: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "video": self.video, "frames": self.frames, "model": self.model,
                "bytes": self.bytes, "last_used": self.last_used_ns / 1e9}


def _meta(path: Path) -> dict[str, Any]:
    """The `meta` an entry was stored with (fpcli.model.clip_features), {} where it cannot be read."""
    try:
        with open(path, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if not 0 < length <= _HEADER_LIMIT:
                return {}
            header = json.loads(f.read(length))
        meta = json.loads(header["__metadata__"]["meta"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def cache_entries(cache: FeatureCache) -> list[CacheEntry]:
    """Every entry, most recently used first."""
    entries = []
    for path, size, used_ns in cache.files():
        meta = _meta(path)
        frames = meta.get("timestamps")
        video = meta.get("path", meta.get("video"))  # the full path (entries stored before it: the name given)
        entries.append(CacheEntry(path, video, len(frames) if isinstance(frames, list) else None,
                                  meta.get("model"), size, used_ns))
    return sorted(entries, key=lambda entry: entry.last_used_ns, reverse=True)


def matches(entry: CacheEntry, pattern: str) -> bool:
    """Whether the entry's video path, or its file name, matches the shell-style `pattern` (`*.mp4`, `clips/*`)."""
    return entry.video is not None and (fnmatch.fnmatchcase(entry.video, pattern)
                                        or fnmatch.fnmatchcase(Path(entry.video).name, pattern))


def remove_entries(cache: FeatureCache, pattern: str) -> list[CacheEntry]:
    """Remove the entries whose video matches `pattern`; the removed ones. FeatureCacheError when one cannot be."""
    removed = []
    for entry in cache_entries(cache):
        if matches(entry, pattern):
            try:
                entry.path.unlink(missing_ok=True)
            except OSError as err:
                raise FeatureCacheError(f"cannot remove a feature cache entry ({err.strerror or err})",
                                        entry.path) from None
            removed.append(entry)
    return removed
