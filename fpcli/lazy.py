"""`torch`, imported on its first use rather than when a module is imported.

For the modules that declare something the CLI lists and checks before any tensor work (the in-LLM methods of
fpcli.model.inllm.methods declare their names and options next to their code): importing them to read a
declaration must not cost torch's import (about a second), while their code reads `torch.cat(...)` as usual.
"""

from __future__ import annotations

import importlib
import types


class _LazyModule(types.ModuleType):
    """Stands for the module of its name; the first attribute read imports it and every read is forwarded."""

    def __getattr__(self, name: str):
        return getattr(importlib.import_module(self.__name__), name)


torch = _LazyModule("torch")
