"""The Hugging Face hub, for every model-layer caller: one way to get a repository's files onto disk, one mapping
of hub failures to one-line errors, one check that weights are safetensors.

`snapshot(repo_id, patterns)` returns the cached snapshot when there is one, without the network; otherwise,
unless HF_HUB_OFFLINE is set, it lists the files first (sizes, and whether there are safetensors weights at all),
checks the disk, says how much it will download and downloads file by file with byte progress.
Only "not in the cache" falls through to a download: a cache that cannot be read (PermissionError) is reported as
such. `error` is the caller's ModelError subclass (conversion reports ConversionError).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Callable

from fpcli.model.errors import ModelError

Progress = Callable[[str, int, int], None]  # progress(stage, done, total); stage "download" counts bytes
Notify = Callable[[str], None]  # one-line messages for the user (download size, where the result goes)
RoomCheck = Callable[[Path, int, int], None]  # (cache, bytes to download, bytes of weights) -> raise if no room

PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth")
_log = logging.getLogger(__name__)


def say(notify: Notify | None, message: str) -> None:
    # Without a callback the message still reaches stderr: logging's last-resort handler shows warnings.
    if notify is not None:
        notify(message)
    else:
        _log.warning(message)


def human_size(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def check_free_space(directory: Path, needed: int, what: str, error: type[ModelError] = ModelError) -> None:
    """Fail unless `directory`'s file system has `needed` bytes (and 64 MiB to spare) free."""
    free = shutil.disk_usage(directory).free
    if free < needed + 64 * 1024**2:
        raise error(f"not enough disk space in {directory} for {what}: {human_size(needed)} needed, "
                    f"{human_size(free)} free")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as the environment says now, or as huggingface_hub read it at import."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return flag or bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir() -> Path:
    """The hub cache as the environment says *now* (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "~")) and " " not in spec


def require_safetensors(path: Path, error: type[ModelError] = ModelError) -> None:
    """Fail unless `path` holds model.safetensors or model.safetensors.index.json (pickle-only weights say so)."""
    if (path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file():
        return
    if any(any(path.glob(pattern)) for pattern in PICKLE_PATTERNS):
        raise error(f"{path} has only pickle weights (.bin/.pt); forestprune loads safetensors only")
    raise error(f"{path} has no model weights (model.safetensors or model.safetensors.index.json)")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _cached(repo_id: str, cache: Path, patterns: list[str], error: type[ModelError], revision: str | None = None
            ) -> Path | None:
    """The cached snapshot's directory, or None when the cache does not have it."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache, allow_patterns=patterns,
                                      local_files_only=True))  # fmt: skip
    except LocalEntryNotFoundError:
        return None
    except PermissionError as exc:
        raise error(f"cannot read the Hugging Face cache ({cache}): {exc.strerror or exc}") from None


def _default_room(cache: Path, download: int, weights: int) -> None:
    check_free_space(cache, download, "the download")


def snapshot(repo_id: str, patterns: list[str], *, error: type[ModelError] = ModelError,
             progress: Progress | None = None, notify: Notify | None = None,
             check_room: RoomCheck = _default_room) -> Path:
    """A local snapshot of `repo_id`'s files that match `patterns`: the cached one, else downloaded."""
    from huggingface_hub import hf_hub_download, snapshot_download
    # HTTPError is the base error of huggingface_hub's http client, re-exported under this name.
    from huggingface_hub.errors import GatedRepoError, HTTPError, RepositoryNotFoundError

    cache = hub_cache_dir()
    cached = _cached(repo_id, cache, patterns, error)
    if cached is not None:
        return cached
    hint = f"download it with `hf download {repo_id} --exclude '*.bin'` where the hub is reachable, or pass a local " \
           "directory"
    if hub_offline():
        raise error(f"model {repo_id} is not in the local Hugging Face cache ({cache}) and HF_HUB_OFFLINE is set",
                    hint=hint)
    try:
        files = snapshot_download(repo_id, cache_dir=cache, allow_patterns=patterns, dry_run=True)
        if not any(f.filename.endswith(".safetensors") for f in files):
            raise error(f"model {repo_id} publishes no safetensors weights; forestprune loads safetensors only")
        pending = [f for f in files if f.will_download]
        size = sum(f.file_size or 0 for f in pending)
        if pending:
            cache.mkdir(parents=True, exist_ok=True)
            check_room(cache, size, sum(f.file_size or 0 for f in files if f.filename.endswith(".safetensors")))
            say(notify, f"Downloading {repo_id}: {len(pending)} files, {human_size(size)}, into {cache}")
        done = 0
        for f in pending:
            hf_hub_download(repo_id, f.filename, revision=f.commit_hash, cache_dir=cache,
                            tqdm_class=_byte_bar(progress, done, size))  # fmt: skip
            done += f.file_size or 0
            if progress is not None:
                progress("download", done, size)
    except GatedRepoError:
        raise error(f"model {repo_id} is gated on the Hugging Face hub",
                    hint="accept its licence on the hub and run `hf auth login`") from None
    except RepositoryNotFoundError:
        raise error(f"model {repo_id} was not found on the Hugging Face hub",
                    hint="check the id, or pass a local directory") from None
    except PermissionError as exc:
        raise error(f"cannot write to the Hugging Face cache ({cache}): {exc.strerror or exc}") from None
    except (HTTPError, OSError) as exc:  # connection, timeout, HTTP status (HfHubHTTPError is both)
        raise error(f"model {repo_id} is not in the local Hugging Face cache ({cache}) and the hub is unreachable "
                    f"({_first_line(exc)})", hint=hint) from None
    revision = files[0].commit_hash if files else None
    found = _cached(repo_id, cache, patterns, error, revision)
    if found is None:
        raise error(f"model {repo_id} was downloaded into {cache} but its snapshot is incomplete", hint=hint)
    return found


def _byte_bar(progress: Progress | None, offset: int, total: int):
    """A silent tqdm class for hf_hub_download that forwards its byte counts to `progress` as stage "download"."""
    from tqdm import tqdm

    class _Forward(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self.sent = 0

        def update(self, n=1):
            self.sent += n or 0
            if progress is not None:
                progress("download", min(offset + self.sent, total), total)

    return _Forward
