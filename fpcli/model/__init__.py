"""Video LLMs (LLaVA-OneVision, LLaVA-Video, Qwen2.5-VL, Qwen3-VL) through transformers, with visual-token pruning.

    llm = load_model("llava-ov-0.5b")
    result = llm.answer(clip, "What is the man doing?", ratio=0.9)

    features = llm.encode_clip(clip)  # several questions: the vision tower once,
    session = llm.start(features, ratio=0.9, method="forestprune")  # pruning and the visual prefill once
    for question in questions:
        print(session.ask(question, GenerationConfig()).answer)

`VideoLLM` (fpcli.model.base) is the one interface of every family (fpcli.model.llava, fpcli.model.qwen) and
`Session` (fpcli.model.session) that of every session. Light names (errors, profiles) import eagerly; the torch-heavy ones on first use, so that importing
`fpcli.model.ModelError` (as the CLI's error handling does) costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from fpcli.model.errors import ModelError, ModelInputError
from fpcli.model.profiles import (
    ATTENTION_NAMES,
    DTYPE_NAMES,
    LAYOUTS,
    PROFILES,
    ModelProfile,
    ResolvedModel,
    known_default_frames,
    known_layout,
    register_profile,
    resolve_model,
)

if TYPE_CHECKING:
    from fpcli.model.clip_features import ClipFeatures
    from fpcli.model.compare import Comparison
    from fpcli.model.base import VideoLLM
    from fpcli.model.generate import GenerationConfig
    from fpcli.model.inspect import StatsResult
    from fpcli.model.loading import load_model
    from fpcli.model.result import AnswerResult, PrefillTflops, Timings, TokenCounts
    from fpcli.model.session import Session

_LAZY = {
    "load_model": "fpcli.model.loading",
    "VideoLLM": "fpcli.model.base",
    "Session": "fpcli.model.session",
    "ClipFeatures": "fpcli.model.clip_features",
    "Comparison": "fpcli.model.compare",
    "GenerationConfig": "fpcli.model.generate",
    "AnswerResult": "fpcli.model.result",
    "TokenCounts": "fpcli.model.result",
    "Timings": "fpcli.model.result",
    "PrefillTflops": "fpcli.model.result",
    "StatsResult": "fpcli.model.inspect",
}

__all__ = [
    "ATTENTION_NAMES", "DTYPE_NAMES", "LAYOUTS", "ModelError", "ModelInputError", "ModelProfile", "PROFILES",
    "ResolvedModel", "known_default_frames", "known_layout", "register_profile", "resolve_model", *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fpcli.model' has no attribute {name!r}")
