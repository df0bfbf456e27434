"""The command runner: what every command does around its real work. Expand the VIDEO arguments, open the feature
cache, go through the videos printing each result (and its warnings) as it comes; the model source and the clip's
features are fpcli.run's.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import typer
from rich.console import Console
from rich.rule import Rule
from rich.text import Text

from fpcli.cli.errors import report, usage_error
from fpcli.errors import Fatal, describe
from fpcli.cli.progress import Reporter

if TYPE_CHECKING:
    from fpcli.model.feature_cache import FeatureCache


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


def feature_cache(no_cache: bool, max_size: Optional[str]) -> Optional[FeatureCache]:
    """The command's feature cache: None with --no-cache or FORESTPRUNE_NO_CACHE=1; a bad size is a usage error
    (exit 2) before any work. Its warnings (a broken entry, a read-only directory) reach the results' warnings."""
    from fpcli.model.feature_cache import cache_from_env

    return cache_from_env(enabled=not no_cache, max_size=max_size)


def warn(result: dict[str, Any]) -> None:
    """The video layer's warnings of a result, on stderr whatever --quiet says: they change what was measured."""
    for warning in result.get("warnings", []):
        print(f"Warning: {warning} ({result['video']})", file=sys.stderr)


Result = dict[str, Any] | list[dict[str, Any]]  # one JSON-form result of a video, or several (ask --compare)


def each_video(paths: list[Path], work: Callable[[Path], Result], show: Callable[[Console, Result], None],
               json_output: bool, debug: bool, reporter: Reporter) -> None:
    """`work` on each video; each result printed as it comes: JSON lines (one per result of a video), or under a
    rule (several videos) by `show`.

    A video that fails is reported and the others go on; the exit code at the end is the highest of the failures'
    codes (1 for a runtime failure, 2 for a usage error such as a prompt beyond the model's context); a model that
    cannot load or cannot run the settings (errors.Fatal) ends the command at once. With --json over several videos, stderr gets a line per video and
    the ok/failed count at the end, as stdout holds only the JSON lines.
    """
    out = Console(highlight=False, soft_wrap=True)
    counting = json_output and len(paths) > 1
    failed, code = 0, 0
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
                message, hint, exit_code = describe(exc)
                print(f"failed {where}: {message}" + (f"\nHint: {hint}" if hint else ""), file=sys.stderr)
            else:
                exit_code = report(exc, debug)
            code = max(code, exit_code)
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
        raise typer.Exit(code)
