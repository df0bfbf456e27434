"""The "Ready" line `forestprune chat` prints once the clip is encoded and pruned: what the answers will rest on.

Frames as sampled, and for Qwen-VL the temporal groups they were merged into (its features have a row per pair
of frames), the same way `ask` reports them; the visual tokens kept before the LLM, or for a method that prunes
inside it the tokens that enter it and how many its layers keep (per question).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fpcli.model import Session


def ready_line(video: Path, session: Session) -> str:
    """`Ready: clip.mp4, 8 frames in 4 groups (encoded in 1.2 s), 51 of 512 visual tokens kept. ...`"""
    features = session.features
    frames, groups = len(features.timestamps), features.frames
    sampled = f"{frames} frames" + (f" in {groups} groups" if groups != frames else "")
    source = ("from the feature cache" if features.cache == "hit" else
              f"encoded in {features.decode_s + features.encode_s:.1f} s")
    total, kept, entering = session.visual_before, session.visual_kept, session.visual_entering
    if not session.in_llm:
        tokens = f"{kept} of {total} visual tokens kept"
    else:
        enter = f"all {total}" if entering == total else f"{entering} of {total}"
        tokens = f"{enter} visual tokens enter the LLM, {session.method} keeps {kept} inside it"
    return f"Ready: {video}, {sampled} ({source}), {tokens}. Ask away; /exit or Ctrl-D ends."
