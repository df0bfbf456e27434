"""Visual-token pruning for video LLMs: `prune()` and the methods registered behind it.

Importing a method's module registers it; the imports below run in the order that
`available_methods()` lists the built-in methods.
"""

# isort: off
from fpcli.prune.registry import PruneResult, Selection, available_methods, prune, register_method
from fpcli.prune.extras import VISION_EXTRAS
from fpcli.prune import baselines  # none, uniform, random
from fpcli.prune import gprune  # gprune
from fpcli.prune import divprune  # divprune
from fpcli.prune import dycoke  # dycoke
from fpcli.prune.forest import Forest, ForestSummary  # forestprune
from fpcli.prune import visionzip  # visionzip

# isort: on

__all__ = [
    "VISION_EXTRAS",
    "Forest",
    "ForestSummary",
    "PruneResult",
    "Selection",
    "available_methods",
    "prune",
    "register_method",
]
