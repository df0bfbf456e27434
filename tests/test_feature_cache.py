"""fpcli.model.feature_cache: keys, exact round trips, and staying out of the way under abuse (no model needed)."""

import errno
import json
import multiprocessing
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as save_tensors

from fpcli.errors import InputError
from fpcli.model import feature_cache as fc
from fpcli.model.feature_cache import (
    DEFAULT_MAX_BYTES,
    CacheInfo,
    FeatureCache,
    FeatureCacheError,
    cache_from_env,
    cache_key,
    checkpoint_identity,
    parse_size,
)

SAMPLE = Path(__file__).resolve().parents[1] / "sample_videos" / "moving_object.mp4"
META = {"video": "clip.mp4", "grid": [2, 2], "timestamps": [0.0, 0.5], "duration": 1.0, "frame_indices": [0, 3]}
KEY = "0123456789abcdef0123456789abcdef01234567"


def keyed(n: int) -> str:
    return f"{n:040x}"


def tensors(seed: int = 0, dtype=torch.float32) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "features": torch.randn(2, 4, 8, generator=gen).to(dtype),  # [T, N, D]
        "extras.vision_attention": torch.rand(2, 4, generator=gen),  # [T, N]
    }


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("FORESTPRUNE_CACHE", "FORESTPRUNE_CACHE_MAX_SIZE", "FORESTPRUNE_NO_CACHE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return Path(shutil.copy(SAMPLE, tmp_path / "clip.mp4"))


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    directory = tmp_path / "ckpt"
    directory.mkdir()
    (directory / "config.json").write_text('{"model_type": "llava_onevision"}')
    (directory / "model.safetensors").write_bytes(save_tensors({"w": torch.zeros(3)}))
    return directory


def key_of(video: Path, sampling=None, checkpoint="ckpt", layout="onevision", dtype="float32") -> str:
    return cache_key(video, {"num_frames": 8} if sampling is None else sampling, checkpoint, layout, dtype)


def assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype and torch.equal(got[name], want[name]), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_round_trip_is_bit_identical_in_the_stored_dtype(tmp_path, dtype):
    cache = FeatureCache(tmp_path)
    stored = tensors(1, dtype)
    stored["features"][0, 0, 0] = float("nan")  # NaN payloads survive too: bytes, not values, are compared
    cache.put(KEY, stored, META)
    assert cache.contains(KEY) and not cache.contains(keyed(1))
    got, meta = cache.get(KEY)
    assert meta == META
    assert got["features"].dtype == dtype
    assert torch.equal(got["features"].view(torch.uint8), stored["features"].view(torch.uint8))
    assert torch.equal(got["extras.vision_attention"], stored["extras.vision_attention"])
    assert list(tmp_path.iterdir()) == [tmp_path / f"{KEY}.safetensors"]  # one file: tensors and meta together
    assert cache.warnings == []


def test_missing_entry_is_a_miss_and_keys_are_checked(tmp_path):
    cache = FeatureCache(tmp_path / "not-yet")
    assert cache.get(KEY) is None and not cache.contains(KEY)
    assert not (tmp_path / "not-yet").exists()  # reading never creates the directory
    with pytest.raises(ValueError, match=r"not a feature cache key: '\.\./x'"):
        cache.get("../x")


def test_key_misses_on_every_component(video, checkpoint, tmp_path):
    base = key_of(video)
    assert key_of(video) == base
    assert key_of(Path(os.path.relpath(video))) == base  # the resolved path counts, not its spelling
    assert key_of(video, {"num_frames": 8, "fps": None}) == base  # None is the default
    assert key_of(video, {"num_frames": 4}) != base
    assert key_of(video, {"num_frames": 8, "index_rule": "floor"}) != base
    assert key_of(video, {"num_frames": 8, "start": 1.0, "end": 2.0}) != base
    assert key_of(video, {"fps": 1.0}) != base
    assert key_of(video, checkpoint="other") != base
    assert key_of(video, layout="video") != base
    assert key_of(video, dtype="bfloat16") != base
    assert cache_key(video, {"num_frames": 8}, "ckpt", "onevision", "float32", extra={"device": "cuda"}) != base
    other = Path(shutil.copy(video, tmp_path / "copy.mp4"))
    assert key_of(other) != base  # same bytes, another file


def test_key_misses_when_the_file_is_touched_replaced_or_grown(video):
    base = key_of(video)
    stat = video.stat()
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert key_of(video) != base
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert key_of(video) == base
    data = bytearray(video.read_bytes())
    for position in (10, len(data) - 10):  # same size, same mtime, other bytes at the start or at the end
        changed = bytearray(data)
        changed[position] ^= 0xFF
        video.write_bytes(bytes(changed))
        os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert key_of(video) != base
    video.write_bytes(bytes(data))
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert key_of(video) == base


def test_key_of_an_unreadable_video_raises_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        key_of(tmp_path / "nope.mp4")


def test_checkpoint_identity_follows_the_directory_its_configs_and_weights(checkpoint, tmp_path):
    base = checkpoint_identity(checkpoint)
    assert base == checkpoint_identity(checkpoint / ".." / "ckpt")
    assert base.startswith(f"{checkpoint.resolve()}#")
    assert checkpoint_identity(shutil.copytree(checkpoint, tmp_path / "copy")) != base
    (checkpoint / "config.json").write_text('{"model_type": "llava_onevision", "vision_feature_layer": -1}')
    edited = checkpoint_identity(checkpoint)
    assert edited != base
    for name in ("preprocessor_config.json", "video_preprocessor_config.json", "forestprune.json"):
        (checkpoint / name).write_text("{}")
        assert checkpoint_identity(checkpoint) != edited, name
        edited = checkpoint_identity(checkpoint)
    weights = checkpoint / "model.safetensors"
    stat = weights.stat()
    weights.write_bytes(save_tensors({"w": torch.ones(3)}))  # same header, rewritten
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert checkpoint_identity(checkpoint) != edited


def _write_many(root: str, key: str, seed: int, barrier, rounds: int) -> None:
    cache = FeatureCache(Path(root))
    big = {"features": torch.full((64, 64, 64), float(seed))}  # 1 MB: long enough for the writes to overlap
    barrier.wait()
    for _ in range(rounds):
        cache.put(key, big, {"writer": seed})
    assert cache.warnings == []


def test_two_processes_writing_one_key_never_leave_a_broken_entry(tmp_path):
    # spawn, not fork: a child forked from a process whose torch/OpenMP threads are running can deadlock in them
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)
    writers = [context.Process(target=_write_many, args=(str(tmp_path), KEY, seed, barrier, 30)) for seed in (1, 2)]
    for writer in writers:
        writer.start()
    barrier.wait()
    reader = FeatureCache(tmp_path)
    while any(writer.is_alive() for writer in writers):
        entry = reader.get(KEY)
        if entry is not None:
            got, meta = entry
            assert torch.equal(got["features"], torch.full((64, 64, 64), float(meta["writer"])))
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    got, meta = reader.get(KEY)
    assert meta["writer"] in (1, 2) and torch.equal(got["features"], torch.full((64, 64, 64), float(meta["writer"])))
    assert reader.warnings == []
    assert [p.name for p in tmp_path.iterdir()] == [f"{KEY}.safetensors"]  # no temporary file left behind


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "flipped":
        path.write_bytes(data[:-5] + bytes([data[-5] ^ 1]) + data[-4:])  # a bit of the tensor bytes
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes((20).to_bytes(8, "little") + b"\xff" * 20)  # a header that is not JSON
    else:
        path.write_bytes(data[: len(data) - 3])  # the header intact, the tensor bytes cut short


@pytest.mark.parametrize(
    ("how", "reason"),
    [("flipped", "corrupt"), ("garbage", "corrupt"), ("truncated", "truncated"), ("empty", "truncated"),
     ("short", "truncated")],
)  # fmt: skip
def test_a_damaged_entry_is_a_miss_reported_once_and_rewritten(tmp_path, how, reason):
    said = []
    cache = FeatureCache(tmp_path, warn=said.append)
    path = tmp_path / f"{KEY}.safetensors"
    for _ in range(2):  # the same damage twice: one warning
        cache.put(KEY, tensors(), META)
        _damage(path, how)
        assert cache.get(KEY) is None
        assert not path.exists()
    assert said == cache.warnings == [f"ignored a feature cache entry ({reason}): {path}; it is rewritten"]
    cache.put(KEY, tensors(), META)
    assert_same(cache.get(KEY)[0], tensors())


def test_an_entry_of_another_format_version_is_a_miss(tmp_path):
    path = tmp_path / f"{KEY}.safetensors"
    old = {"format": "0", "key": KEY, "digest": fc._digest(tensors()), "meta": json.dumps(META)}
    path.write_bytes(save_tensors(tensors(), old))
    cache = FeatureCache(tmp_path)
    assert cache.get(KEY) is None
    assert cache.warnings == [
        f"ignored a feature cache entry (format version 0, this version reads {fc.FORMAT_VERSION}): {path}; "
        "it is rewritten"
    ]


def test_an_entry_stored_under_another_key_is_a_miss(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.put(KEY, tensors(), META)
    os.replace(tmp_path / f"{KEY}.safetensors", tmp_path / f"{keyed(7)}.safetensors")
    assert cache.get(keyed(7)) is None
    assert cache.warnings[0].startswith("ignored a feature cache entry (corrupt)")


def test_a_cache_dir_that_is_not_a_directory_means_running_without_it(tmp_path):
    (tmp_path / "file").write_text("x")
    said = []
    cache = FeatureCache(tmp_path / "file" / "features", warn=said.append)
    cache.put(KEY, tensors(), META)
    cache.put(keyed(1), tensors(), META)
    assert cache.get(KEY) is None
    root = tmp_path / "file" / "features"
    assert said == [f"the feature cache in {root} cannot be written (Not a directory); running without it"]


@pytest.mark.parametrize(
    ("code", "reason"), [(errno.EROFS, "it is read-only"), (errno.ENOSPC, "the disk is full")]
)
def test_read_only_or_full_at_the_rename_leaves_no_temp_file(tmp_path, monkeypatch, code, reason):
    cache = FeatureCache(tmp_path)

    def refuse(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fc.os, "replace", refuse)
    cache.put(KEY, tensors(), META)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
    assert cache.warnings == [f"the feature cache in {tmp_path} cannot be written ({reason}); running without it"]
    cache.put(KEY, tensors(), META)  # writing stays off for this cache object
    assert cache.get(KEY) is None


def test_a_full_disk_during_the_write_leaves_no_temp_file(tmp_path, monkeypatch):
    class FullDisk:
        def __init__(self, fd):
            os.close(fd)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    cache = FeatureCache(tmp_path)
    cache.put(keyed(1), tensors(), META)
    monkeypatch.setattr(fc.os, "fdopen", lambda fd, mode: FullDisk(fd))
    cache.put(KEY, tensors(), META)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == [f"{keyed(1)}.safetensors"]
    assert cache.warnings == [
        f"the feature cache in {tmp_path} cannot be written (the disk is full); running without it"
    ]
    assert_same(cache.get(keyed(1))[0], tensors())  # reading goes on


def test_a_read_only_cache_still_serves_hits(tmp_path, monkeypatch):
    FeatureCache(tmp_path).put(KEY, tensors(), META)

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(fc.os, "utime", refuse)
    cache = FeatureCache(tmp_path)
    assert_same(cache.get(KEY)[0], tensors())
    assert cache.warnings == []


def test_eviction_removes_the_least_recently_used_first(tmp_path):
    probe = FeatureCache(tmp_path / "probe")
    probe.put(KEY, tensors(), META)
    size = probe.info().bytes
    cache = FeatureCache(tmp_path / "c", max_bytes=3 * size)
    for n in (1, 2, 3):
        cache.put(keyed(n), tensors(n), META)
    assert cache.info().entries == 3
    assert cache.get(keyed(1)) is not None  # 1 is now the most recently used, 2 the least
    cache.put(keyed(4), tensors(4), META)
    assert sorted(p.name[:40] for p in cache.root.iterdir()) == [keyed(1), keyed(3), keyed(4)]
    cache.put(keyed(5), tensors(5), META)
    assert sorted(p.name[:40] for p in cache.root.iterdir()) == [keyed(1), keyed(4), keyed(5)]
    assert cache.info() == CacheInfo(3, 3 * size, tmp_path / "c", 3 * size)
    assert cache.warnings == []


def test_an_entry_larger_than_the_cap_is_not_kept(tmp_path):
    cache = FeatureCache(tmp_path, max_bytes=100)
    cache.put(KEY, tensors(), META)
    assert list(tmp_path.iterdir()) == []
    assert cache.warnings == [
        "clip features of 696 B exceed the feature cache size 100 B; not kept (raise FORESTPRUNE_CACHE_MAX_SIZE)"
    ]


def test_stale_temp_files_go_and_fresh_ones_stay(tmp_path):
    stale, fresh = tmp_path / ".tmp-dead.partial", tmp_path / ".tmp-writing.partial"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(stale, (0, 0))
    FeatureCache(tmp_path).put(KEY, tensors(), META)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-writing.partial", f"{KEY}.safetensors"]


def test_info_and_clear(tmp_path):
    cache = FeatureCache(tmp_path / "f", max_bytes=10**6)
    assert cache.info().to_dict() == {"entries": 0, "bytes": 0, "root": str(tmp_path / "f"), "max_bytes": 10**6}
    assert cache.clear() == 0
    for n in range(3):
        cache.put(keyed(n), tensors(n), META)
    assert cache.info().entries == 3 and cache.info().bytes == 3 * 696
    assert cache.clear() == 3
    assert cache.info().entries == 0 and cache.get(keyed(0)) is None


def test_clear_that_cannot_delete_raises(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path)
    cache.put(KEY, tensors(), META)

    def refuse(self, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(fc.Path, "unlink", refuse)
    message = rf"^cannot clear the feature cache \(Read-only file system\) \({tmp_path}\)$"
    with pytest.raises(FeatureCacheError, match=message):
        cache.clear()


@pytest.mark.parametrize(
    ("text", "size"),
    [("5GB", 5 * 10**9), ("500MB", 500 * 10**6), ("500mb", 500 * 10**6), (" 2 kB ", 2000), ("1.5GiB", 3 * 2**29),
     ("1000", 1000), ("7b", 7), ("1T", 10**12)],
)  # fmt: skip
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["0", "0GB", "abc", "5XB", "-1GB", "", "GB", "1e9"])
def test_parse_size_rejects(text):
    with pytest.raises(InputError, match=rf"^cache size must be a positive size such as 5GB or 500MB, got '{text}'$"):
        parse_size(text)


def test_environment_sets_root_cap_and_off(tmp_path, monkeypatch):
    monkeypatch.setenv("FORESTPRUNE_CACHE", str(tmp_path / "fp"))
    cache = cache_from_env()
    assert (cache.root, cache.max_bytes) == (tmp_path / "fp" / "features", DEFAULT_MAX_BYTES)
    monkeypatch.setenv("FORESTPRUNE_CACHE_MAX_SIZE", "500MB")
    assert cache_from_env().max_bytes == 500 * 10**6
    assert cache_from_env(max_size="1GB").max_bytes == 10**9  # the option wins over the environment
    assert cache_from_env(enabled=False) is None
    monkeypatch.setenv("FORESTPRUNE_CACHE_MAX_SIZE", "lots")
    with pytest.raises(InputError, match="got 'lots'"):
        cache_from_env()
    monkeypatch.setenv("FORESTPRUNE_NO_CACHE", "1")
    assert cache_from_env() is None
    monkeypatch.setenv("FORESTPRUNE_NO_CACHE", "0")
    monkeypatch.delenv("FORESTPRUNE_CACHE_MAX_SIZE")
    assert cache_from_env() is not None
    monkeypatch.delenv("FORESTPRUNE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert FeatureCache().root == tmp_path / "xdg" / "forestprune" / "features"


def test_info_on_a_read_only_cache_with_a_stale_temp_file(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path)
    cache.put(KEY, tensors(), META)
    stale = tmp_path / ".tmp-dead.partial"
    stale.write_bytes(b"x")
    os.utime(stale, (0, 0))

    def refuse(self, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(fc.Path, "unlink", refuse)
    assert cache.info() == CacheInfo(1, 696, tmp_path, DEFAULT_MAX_BYTES)
