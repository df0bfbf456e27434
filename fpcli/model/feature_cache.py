"""FeatureCache: a clip's visual features on disk, so that asking again about a clip skips decoding and the tower.

    cache = cache_from_env()                      # None when FORESTPRUNE_NO_CACHE=1
    key = cache_key(video, {"num_frames": 8}, checkpoint_identity(path), "onevision", "bfloat16")
    entry = cache.get(key)                        # (tensors, meta) or None
    cache.put(key, tensors, meta)

One entry is one safetensors file `<key>.safetensors` under `$FORESTPRUNE_CACHE/features`; its metadata holds the
format version, the key, a digest of the tensors and the caller's meta dict as JSON, so tensors and meta are written
together by a single rename and cannot disagree. The tensors come back bit for bit in their stored dtype.

The cache must never be the reason a run fails. Writes go to a temporary file in the same directory and are renamed
over the entry (atomic on POSIX), so two processes writing one key leave one of their complete entries. An entry that
does not decode, is truncated, fails its digest or has another format version is a miss: reported once, removed, and
rewritten by the caller's put. A directory that cannot be written (read-only, full disk, not a directory) turns
writing off for this cache object with one warning; reading goes on. Warnings go to `warn` and to `.warnings`.

Size: at most `max_bytes` (default 5 GB, or FORESTPRUNE_CACHE_MAX_SIZE such as "500MB"); after every put the least
recently used entries go first. An entry's mtime is its last use: a hit touches it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import Tensor

from fpcli.errors import ForestpruneError, InputError
from fpcli.model.cache_dir import forestprune_cache_dir
from fpcli.model.hub import human_size
from fpcli.model.llava.preprocess import CONFIG_FILES as PREPROCESSOR_FILES
from fpcli.model.profiles import LAYOUT_FILE

# Bump when an entry's layout or the meaning of its tensors changes: older entries then miss. 2: the vision
# tower's extras (vision_attention, vision_keys) are in every entry, as visionzip needs them.
FORMAT_VERSION = 2
DEFAULT_MAX_BYTES = 5 * 10**9
MAX_SIZE_ENV = "FORESTPRUNE_CACHE_MAX_SIZE"
NO_CACHE_ENV = "FORESTPRUNE_NO_CACHE"
_SUFFIX = ".safetensors"
_TEMP_PREFIX = ".tmp-"
_STALE_TEMP_S = 3600  # a temporary file this old belongs to a writer that died: eviction removes it
_EDGE_BYTES = 2**20  # the video's first and last MiB go into its identity
_KEY = re.compile(r"[0-9a-f]{16,128}")
_UNITS = {
    "": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12,
    "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*")
# Besides the weights' headers: the files that decide what the tower computes from pixels.
_CHECKPOINT_FILES = ("config.json", *PREPROCESSOR_FILES, LAYOUT_FILE, "model.safetensors.index.json")


class FeatureCacheError(ForestpruneError):
    """The cache itself cannot do what was asked of it explicitly (`clear` on a read-only directory)."""


@dataclass
class CacheInfo:
    """What `forestprune cache info` shows."""

    entries: int
    bytes: int
    root: Path
    max_bytes: int

    def to_dict(self) -> dict:
        return {**asdict(self), "root": str(self.root)}


def parse_size(text: str) -> int:
    """'5GB', '500MB', '1.5 GiB', '1000000' -> bytes (kB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB of 1024)."""
    match = _SIZE.fullmatch(str(text).lower())
    if match is None or match.group(2) not in _UNITS or float(match.group(1)) * _UNITS[match.group(2)] < 1:
        raise InputError(
            f"cache size must be a positive size such as 5GB or 500MB, got {text!r}",
            hint="units: B, kB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)",
        )
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def cache_disabled() -> bool:
    """FORESTPRUNE_NO_CACHE set to 1/true/yes/on."""
    return os.environ.get(NO_CACHE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def cache_from_env(
    *, enabled: bool = True, max_size: str | None = None, warn: Callable[[str], None] | None = None
) -> FeatureCache | None:
    """The cache the commands use: None when `enabled` is False (--no-cache) or FORESTPRUNE_NO_CACHE is set.

    `max_size` (--cache-max-size) overrides FORESTPRUNE_CACHE_MAX_SIZE; both are parsed before any work is done.
    """
    if not enabled or cache_disabled():
        return None
    return FeatureCache(max_bytes=None if max_size is None else parse_size(max_size), warn=warn)


def video_identity(video: str | os.PathLike) -> dict:
    """Resolved path, size, mtime and a hash of the first and last MiB: a touched or replaced file differs.

    Raises OSError when the file cannot be read (the caller lets the video loader say what is wrong with it).
    """
    path = Path(video).resolve()
    with open(path, "rb") as f:
        stat = os.fstat(f.fileno())
        digest = hashlib.blake2b(f.read(_EDGE_BYTES), digest_size=16)
        if stat.st_size > _EDGE_BYTES:
            f.seek(max(_EDGE_BYTES, stat.st_size - _EDGE_BYTES))
            digest.update(f.read(_EDGE_BYTES))
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "edges": digest.hexdigest()}


def _safetensors_header(path: Path) -> bytes:
    """The length prefix and JSON header of a safetensors file (names, dtypes, shapes, offsets; no weights)."""
    with open(path, "rb") as f:
        prefix = f.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else 0
        return prefix + f.read(min(length, 100 * 2**20))


def checkpoint_identity(path: str | os.PathLike) -> str:
    """The resolved checkpoint directory and a hash of its configs, weight index and safetensors headers.

    Shard sizes and mtimes go in too: a checkpoint rebuilt in place with the same shapes has the same headers.
    Reads only headers, so it costs milliseconds even for a 72B checkpoint.
    """
    root = Path(path).resolve()
    digest = hashlib.sha256(str(root).encode())
    for name in _CHECKPOINT_FILES:
        if (root / name).is_file():
            digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    for shard in sorted(root.glob("*" + _SUFFIX)):
        stat = shard.stat()
        digest.update(f"{shard.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode() + _safetensors_header(shard))
    return f"{root}#{digest.hexdigest()[:32]}"


def cache_key(
    video: str | os.PathLike, sampling: dict, checkpoint: str, layout: str, dtype: str, *, extra: dict | None = None
) -> str:
    """A hex key of everything that decides a clip's features.

    `sampling` is the keyword arguments given to `sample_frames` (None values dropped: they are the defaults);
    `checkpoint` is `checkpoint_identity(dir)`; `extra` anything else the caller knows changes them (the device).
    Raises OSError when the video cannot be read.
    """
    document = {
        "format": FORMAT_VERSION,
        "video": video_identity(video),
        "sampling": {name: value for name, value in sampling.items() if value is not None},
        "checkpoint": checkpoint,
        "layout": layout,
        "dtype": dtype,
        "extra": extra or {},
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:40]


def _digest(tensors: dict[str, Tensor]) -> str:
    """A hash of every tensor's name, dtype, shape and bytes: what safetensors itself does not check."""
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        value = tensors[name]
        digest.update(f"{name}\0{value.dtype}\0{tuple(value.shape)}\0".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy())  # [bytes], no copy
    return digest.hexdigest()


class _BadEntry(Exception):
    """An entry on disk that is not a usable entry of this format (the message says how)."""


def _decode(blob: bytes, key: str) -> tuple[dict[str, Tensor], dict]:
    length = int.from_bytes(blob[:8], "little")
    if len(blob) < 8 or len(blob) < 8 + length:
        raise _BadEntry("truncated")
    try:
        header = json.loads(blob[8 : 8 + length])
        metadata = header.get("__metadata__") or {}
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, AttributeError, KeyError, TypeError, IndexError):
        raise _BadEntry("corrupt") from None
    if metadata.get("format") != str(FORMAT_VERSION):
        raise _BadEntry(f"format version {metadata.get('format')}, this version reads {FORMAT_VERSION}")
    if len(blob) < 8 + length + end:
        raise _BadEntry("truncated")
    try:
        tensors = load_tensors(blob)
        meta = json.loads(metadata["meta"])
    except (SafetensorError, KeyError, ValueError):
        raise _BadEntry("corrupt") from None
    if metadata.get("key") != key or metadata.get("digest") != _digest(tensors):
        raise _BadEntry("corrupt")
    return tensors, meta


def _write_failure(err: OSError) -> str:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "it is read-only"
    return err.strerror or str(err)


@dataclass
class _Entry:
    path: Path
    size: int
    used_ns: int


class FeatureCache:
    """Clip features by key, in safetensors files under `root`, at most `max_bytes` in all (LRU eviction)."""

    def __init__(
        self, root: Path | None = None, max_bytes: int | None = None, warn: Callable[[str], None] | None = None
    ):
        self.root = Path(root) if root is not None else forestprune_cache_dir() / "features"
        if max_bytes is None:
            max_bytes = parse_size(os.environ[MAX_SIZE_ENV]) if os.environ.get(MAX_SIZE_ENV) else DEFAULT_MAX_BYTES
        if max_bytes < 1:
            raise InputError(f"cache size must be positive, got {max_bytes} bytes")
        self.max_bytes = max_bytes
        self.warnings: list[str] = []
        self._warn_callback = warn
        self._writable = True
        self._clock = 0

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.root)!r}, max_bytes={self.max_bytes})"

    def _warn(self, message: str) -> None:
        if message in self.warnings:  # once per cache object: a batch of 1000 items says it once
            return
        self.warnings.append(message)
        if self._warn_callback is not None:
            self._warn_callback(message)

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):  # keys come from cache_key; anything else could point outside the root
            raise ValueError(f"not a feature cache key: {key!r}")
        return self.root / (key + _SUFFIX)

    def _touch(self, path: Path) -> None:
        """Mark `path` used now; strictly later than this object's previous mark, so order survives coarse clocks."""
        self._clock = max(time.time_ns(), self._clock + 1)
        with contextlib.suppress(OSError):  # a read-only cache still serves hits; only the LRU order is less exact
            os.utime(path, ns=(self._clock, self._clock))

    def contains(self, key: str) -> bool:
        """Whether an entry for `key` is on disk (not read: `get` may still find it broken). For a caller that decodes
        before loading the model on a miss, to report a bad video early, and loads first on a likely hit."""
        return self._path(key).is_file()

    def get(self, key: str) -> tuple[dict[str, Tensor], dict] | None:
        """(tensors on the CPU, meta) of `key`, or None on a miss (absent, unreadable, corrupt, other version)."""
        path = self._path(key)
        try:
            blob = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None  # absent; a root that cannot exist is reported by the put that follows a miss
        except OSError as err:
            self._warn(f"cannot read the feature cache in {self.root} ({err.strerror or err}); computing features")
            return None
        try:
            entry = _decode(blob, key)
        except _BadEntry as bad:
            self._warn(f"ignored a feature cache entry ({bad}): {path}; it is rewritten")
            with contextlib.suppress(OSError):  # a read-only cache keeps it; the put after the miss says why
                path.unlink(missing_ok=True)
            return None
        self._touch(path)
        self._evict()  # the cap holds on a hit too (a smaller --cache-max-size than the cache has grown to)
        return entry

    def put(self, key: str, tensors: dict[str, Tensor], meta: dict) -> None:
        """Store `tensors` (any device; written from the CPU) and the JSON-serialisable `meta` under `key`."""
        path = self._path(key)
        if not self._writable:
            return
        cpu = {name: value.detach().to("cpu").contiguous() for name, value in tensors.items()}
        metadata = {"format": str(FORMAT_VERSION), "key": key, "digest": _digest(cpu), "meta": json.dumps(meta)}
        blob = save_tensors(cpu, metadata)
        if len(blob) > self.max_bytes:
            self._warn(
                f"clip features of {human_size(len(blob))} exceed the feature cache size {human_size(self.max_bytes)}; "
                "not kept (raise FORESTPRUNE_CACHE_MAX_SIZE)"
            )
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=self.root, prefix=_TEMP_PREFIX, suffix=".partial")
            try:
                # No fsync: an entry cut short by a crash fails its digest and is recomputed, so it is not worth
                # stalling every miss on writeback.
                with os.fdopen(fd, "wb") as f:
                    f.write(blob)
                os.replace(temp, path)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError as err:
            self._writable = False
            why = _write_failure(err)
            self._warn(f"the feature cache in {self.root} cannot be written ({why}); running without it")
            return
        self._touch(path)
        self._evict()

    def _scan(self) -> list[_Entry]:
        """Entries on disk (others may be evicting or writing at the same time: vanished files are skipped)."""
        entries = []
        try:
            names = os.listdir(self.root)
        except OSError:
            return entries
        for name in names:
            path = self.root / name
            try:
                stat = path.stat()
            except OSError:
                continue
            if name.endswith(_SUFFIX) and not name.startswith("."):
                entries.append(_Entry(path, stat.st_size, stat.st_mtime_ns))
            elif name.startswith(_TEMP_PREFIX) and time.time() - stat.st_mtime > _STALE_TEMP_S:
                with contextlib.suppress(OSError):  # read-only: `info` must still answer
                    path.unlink(missing_ok=True)
        return entries

    def _evict(self) -> None:
        """Remove the least recently used entries until the cache fits in max_bytes."""
        entries = sorted(self._scan(), key=lambda e: (e.used_ns, e.path.name))
        total = sum(e.size for e in entries)
        for entry in entries:
            if total <= self.max_bytes:
                break
            try:
                entry.path.unlink(missing_ok=True)
            except OSError:
                return  # cannot delete here: the cap is best effort
            total -= entry.size

    def files(self) -> list[tuple[Path, int, int]]:
        """(path, bytes, last use in ns since the epoch) of every entry on disk, unread."""
        return [(entry.path, entry.size, entry.used_ns) for entry in self._scan()]

    def info(self) -> CacheInfo:
        entries = self._scan()
        return CacheInfo(len(entries), sum(e.size for e in entries), self.root, self.max_bytes)

    def clear(self) -> int:
        """Remove every entry; returns how many there were. Raises FeatureCacheError when they cannot be removed."""
        entries = self._scan()
        try:
            for entry in entries:
                entry.path.unlink(missing_ok=True)
        except OSError as err:
            raise FeatureCacheError(f"cannot clear the feature cache ({err.strerror or err})", self.root) from None
        return len(entries)
