"""Which files of a folder are videos."""

from __future__ import annotations

import os
from pathlib import Path

from fpcli.video.errors import VideoError

# Extensions of the containers ffmpeg reads that people actually store video in.
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wmv", ".flv", ".mpg", ".mpeg", ".ts", ".m2ts",
     ".mts", ".3gp", ".ogv"}
)


def list_videos(folder: str | os.PathLike) -> list[Path]:
    """Video files directly inside `folder` (by extension, case-insensitive), sorted by name.

    Hidden files (macOS `._clip.mp4` resource forks and the like) are not videos and are left out.
    """
    root = Path(folder)
    if not root.is_dir():
        raise VideoError("folder not found" if not root.exists() else "not a folder", root)
    return sorted(
        p for p in root.iterdir()
        if p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )
