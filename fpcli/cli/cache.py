"""`forestprune cache info`, `cache list`, `cache rm PATTERN` and `cache clear`: the feature cache that `ask`,
`stats`, `batch` and `chat` keep clips' features in (fpcli.model.feature_cache)."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from fpcli.cli.options import CacheMaxSize, Debug, Json

cache_app = typer.Typer(
    name="cache", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Show, list or clear the feature cache (clips' visual features, reused by later runs).",
)  # fmt: skip


def _cache(max_size: str | None):
    from fpcli.model.feature_cache import FeatureCache, parse_size

    return FeatureCache(max_bytes=None if max_size is None else parse_size(max_size))


@cache_app.command("info")
def info(cache_max_size: CacheMaxSize = None, json_output: Json = False, debug: Debug = False) -> None:
    """Entries, size, location and cap of the feature cache (and whether FORESTPRUNE_NO_CACHE turns it off)."""
    from fpcli.model.feature_cache import NO_CACHE_ENV, cache_disabled
    from fpcli.model.hub import human_size

    facts = _cache(cache_max_size).info()
    enabled = not cache_disabled()
    if json_output:
        print(json.dumps({**facts.to_dict(), "enabled": enabled}))
        return
    print(f"location  {facts.root}")
    print(f"entries   {facts.entries}")
    print(f"size      {human_size(facts.bytes)} of {human_size(facts.max_bytes)} "
          f"({100 * facts.bytes / facts.max_bytes:.1f}%)")
    if not enabled:
        print(f"disabled  by {NO_CACHE_ENV}")


@cache_app.command("clear")
def clear(debug: Debug = False) -> None:
    """Remove every entry of the feature cache."""
    from fpcli.model.hub import human_size

    cache = _cache(None)
    size = cache.info().bytes
    removed = cache.clear()
    print(f"Removed {removed} entr{'y' if removed == 1 else 'ies'} ({human_size(size)}) from {cache.root}")


@cache_app.command("list")
def list_entries(json_output: Json = False, debug: Debug = False) -> None:
    """The cached clips, most recently used first: video, frames, model, size and last use."""
    from fpcli.model.cache_entries import cache_entries
    from fpcli.model.hub import human_size

    entries = cache_entries(_cache(None))
    if json_output:
        for entry in entries:
            print(json.dumps(entry.to_dict(), ensure_ascii=False))
        return
    for entry in entries:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.last_used_ns / 1e9))
        frames = "-" if entry.frames is None else f"{entry.frames} frames"
        print(f"{used}  {human_size(entry.bytes):>9}  {frames:>10}  {entry.video or '-'}  ({entry.model or '-'})")


@cache_app.command("rm")
def remove(
    pattern: Annotated[str, typer.Argument(metavar="PATTERN", show_default=False,
                                           help="Shell pattern of the video path or file name, e.g. '*.mp4'.")],
    debug: Debug = False,
) -> None:
    """Remove the entries of the videos that match PATTERN (`cache list` shows them)."""
    from fpcli.model.cache_entries import remove_entries
    from fpcli.model.hub import human_size

    cache = _cache(None)
    removed = remove_entries(cache, pattern)
    size = sum(entry.bytes for entry in removed)
    print(f"Removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'} ({human_size(size)}) matching "
          f"{pattern!r} from {cache.root}")
