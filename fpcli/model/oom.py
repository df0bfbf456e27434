"""CUDA out-of-memory anywhere in a model stage becomes a one-line ModelError that says how to need less memory."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from fpcli.model.errors import ModelError


@contextlib.contextmanager
def out_of_memory_is_model_error(stage: str, frames: int) -> Iterator[None]:
    """Inside: a torch.OutOfMemoryError frees the allocator's cache and becomes a ModelError about `stage`."""
    try:
        yield
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        raise ModelError(
            f"CUDA out of memory while {stage} {frames} frames; use fewer frames (--frames) or a higher "
            "pruning ratio (--ratio)"
        ) from None
