"""Where forestprune keeps what it makes for itself (checkpoint conversions, clip features)."""

from __future__ import annotations

import os
from pathlib import Path


def forestprune_cache_dir() -> Path:
    """$FORESTPRUNE_CACHE, else $XDG_CACHE_HOME/forestprune, else ~/.cache/forestprune (read now, not at import)."""
    root = os.environ.get("FORESTPRUNE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "forestprune"
    return Path(root).expanduser()
