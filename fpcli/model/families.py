"""The loader registry: which function builds a loaded `VideoLLM` for each layout.

Each model family registers its loader for the layouts it serves when its loading module is imported
(fpcli.model.llava.loading, fpcli.model.qwen.loading); `fpcli.model.loading.load_model` imports them and dispatches
here. A new family is a folder with a loader that calls `register_loader`, and one import line in load_model's module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable

from fpcli.model.profiles import LAYOUTS

if TYPE_CHECKING:
    import torch

    from fpcli.model.base import VideoLLM
    from fpcli.model.profiles import Progress, ResolvedModel

# (resolved checkpoint, device, dtype, attention implementation, vision_only, progress) -> the loaded model
Loader = Callable[["ResolvedModel", "torch.device", "torch.dtype", str, bool, "Progress | None"], "VideoLLM"]

_LOADERS: dict[str, Loader] = {}


def register_loader(layouts: Iterable[str], loader: Loader) -> None:
    """Make `loader` the one that loads checkpoints of each of `layouts` (each a known layout, registered once)."""
    for layout in layouts:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        if layout in _LOADERS:
            raise ValueError(f"a loader for layout {layout!r} is already registered")
        _LOADERS[layout] = loader


def loader_for(layout: str) -> Loader:
    """The registered loader of `layout`; ValueError when no family serves it."""
    if layout not in _LOADERS:
        raise ValueError(f"no model family loads layout {layout!r}; registered: {', '.join(sorted(_LOADERS))}")
    return _LOADERS[layout]
