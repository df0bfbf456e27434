"""The in-LLM methods' names and options (one source of truth for their defaults and ranges), and their validation.

Torch-free, like fpcli.prune.builtin, so that the CLI lists and checks these methods before importing torch.
Options are named after the papers' symbols and declared with fpcli.prune's `OptionSpec`, checked by its rules.
"""

from __future__ import annotations

from fpcli.prune.options import OptionSpec
from fpcli.prune.registry import check_ratio

_UNBOUNDED = 2**63  # an int option's open upper end; layer indices are checked against the loaded model
_OPTIONS: dict[str, dict[str, OptionSpec]] = {
    "fastv": {
        "K": OptionSpec("K", 2, int, (1, _UNBOUNDED), "layer from which only the kept visual tokens go on (FastV's K)",
                        high_open=True),
    },
    "framefusion": {
        "S_threshold": OptionSpec("S_threshold", 0.6, float, (-1.0, 1.0),
                                  "cosine similarity to the previous frame's same patch at which tokens merge"),
        "N_threshold": OptionSpec("N_threshold", 0.1, float, (0.0, 1.0),
                                  "merging stops at the first layer that merges less than this share"),
    },
    "sttm": {
        "layer": OptionSpec("layer", 2, int, (0, _UNBOUNDED), "decoder layer at whose input the tokens are merged",
                            high_open=True),
        "tau_s": OptionSpec("tau_s", 0.85, float, (-1.0, 1.0), "spatial (quadtree) similarity threshold"),
        "tau_t": OptionSpec("tau_t", 0.6, float, (-1.0, 1.0), "temporal (cross-frame node) similarity threshold"),
        "root_level": OptionSpec("root_level", 1, int, (0, _UNBOUNDED),
                                 "pyramid level the quadtree starts from (0: 2x2)", high_open=True),
    },
}

IN_LLM_METHODS: tuple[str, ...] = tuple(_OPTIONS)


def options_of(method: str) -> dict[str, OptionSpec]:
    """The options of an in-LLM method, by name."""
    if method not in _OPTIONS:
        raise ValueError(f"unknown in-LLM method {method!r}; available: {', '.join(IN_LLM_METHODS)}")
    return dict(_OPTIONS[method])


def validate(ratio: float, method: str, **options: object) -> dict[str, object]:
    """Check ratio, method and options as fpcli.prune.validate does; return every option's value (defaults filled
    in). ValueError naming the argument."""
    check_ratio(ratio)
    specs = options_of(method)
    unknown = [name for name in options if name not in specs]
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} for method {method!r}; accepted options: {', '.join(specs)}")
    return {name: spec.check(options[name]) if name in options else spec.default for name, spec in specs.items()}
