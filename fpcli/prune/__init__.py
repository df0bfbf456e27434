"""Visual-token pruning for video LLMs: `prune()` and the methods registered behind it.

The registry lists and validates the built-in methods (declared in fpcli.prune.builtin) without importing
torch; a method's module is imported when it first prunes, and the torch-backed names below on first use.
So the CLI can check `--method`/`--opt` values and print their help before any heavy import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from fpcli.prune.extras import VISION_EXTRAS
from fpcli.prune.options import OptionSpec
from fpcli.prune.registry import (
    PruneResult,
    Selection,
    available_methods,
    options_of,
    prune,
    register_method,
    validate,
)

if TYPE_CHECKING:
    from fpcli.prune.forest import Forest, ForestSummary

_LAZY = {"Forest": "fpcli.prune.forest", "ForestSummary": "fpcli.prune.forest"}

__all__ = ["VISION_EXTRAS", "Forest", "ForestSummary", "OptionSpec", "PruneResult", "Selection", "available_methods",
           "options_of", "prune", "register_method", "validate"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fpcli.prune' has no attribute {name!r}")
