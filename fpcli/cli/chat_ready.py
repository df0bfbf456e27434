"""The "Ready" line `forestprune chat` prints once the clip is encoded and pruned: what the answers will rest on.

Frames as sampled, and for Qwen-VL the temporal groups they were merged into (its features have a row per pair
of frames), the same way `ask` reports them; the visual tokens kept before the LLM, or for an in-LLM method the
tokens that enter it (the method prunes inside, per question).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fpcli.model import ClipFeatures


def ready_line(video: Path, features: ClipFeatures, session: Any, method: str) -> str:
    """`Ready: clip.mp4, 8 frames in 4 groups (encoded in 1.2 s), 51 of 512 visual tokens kept. ...`"""
    frames = len(features.timestamps)
    groups = features.frames
    sampled = f"{frames} frames" + (f" in {groups} groups" if groups != frames else "")
    source = ("from the feature cache" if features.cache == "hit" else
              f"encoded in {features.decode_s + features.encode_s:.1f} s")
    total = features.features.shape[0] * features.features.shape[1]
    pruned = getattr(session, "pruned", None)  # a session pruned before the LLM; in-LLM ones prune per question
    tokens = (f"{pruned.k} of {total} visual tokens kept" if pruned is not None else
              f"all {total} visual tokens enter the LLM, {method} prunes inside it")
    return f"Ready: {video}, {sampled} ({source}), {tokens}. Ask away; /exit or Ctrl-D ends."
