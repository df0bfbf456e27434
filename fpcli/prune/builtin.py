"""The built-in methods: their names (in listing order), the module that implements each, and their options.

This is the one place their defaults and ranges are declared. It imports nothing heavy, so that the CLI can
list methods, print their options in help texts and check values without importing torch; a method's module is
imported the first time it prunes (see registry.implementation).
"""

from __future__ import annotations

from dataclasses import dataclass

from fpcli.prune.options import OptionSpec


@dataclass(frozen=True)
class Builtin:
    module: str
    options: tuple[OptionSpec, ...] = ()
    keeps_all: bool = False  # only ratio 0 is meaningful
    extras: tuple[str, ...] = ()  # the vision-tower extras (fpcli.prune.extras) its function takes


TAU_S = OptionSpec("tau_s", 0.9, float, (-1.0, 1.0),
                   "cosine similarity a token needs to join an earlier frame's tree")
TAU_P = OptionSpec("tau_p", 0.8, float, (0.0, 1.0),
                   "that link also needs a normalised distance <= 1 - tau_p")
NODE_RATIO = OptionSpec("node_ratio", 0.5, float, (0.0, 1.0), "fraction of each frame's tokens that become nodes",
                        low_open=True)
SEED = OptionSpec("seed", 0, int, (0, 2**63), "seed of the draw", high_open=True)
DOMINANT_SHARE = OptionSpec("dominant_share", 54 / 64, float, (0.0, 1.0),  # VisionZip's 64 tokens: 54 + 10
                            "share of each frame's budget kept as its most-attended tokens; the rest are merged")

BUILTIN: dict[str, Builtin] = {
    "none": Builtin("fpcli.prune.baselines", keeps_all=True),
    "uniform": Builtin("fpcli.prune.baselines"),
    "random": Builtin("fpcli.prune.baselines", (SEED,)),
    "gprune": Builtin("fpcli.prune.gprune"),
    "divprune": Builtin("fpcli.prune.divprune"),
    "dycoke": Builtin("fpcli.prune.dycoke"),
    "forestprune": Builtin("fpcli.prune.forest", (TAU_S, TAU_P, NODE_RATIO)),
    "visionzip": Builtin("fpcli.prune.visionzip", (DOMINANT_SHARE,), extras=("vision_attention", "vision_keys")),
}
