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
# not "temperature": a batch item's temperature is the sampling temperature
FRAME_TEMPERATURE = OptionSpec("frame_temperature", 0.01, float, (0.0, float("inf")),  # compute_scales(temp=0.01)
                               "softmax temperature of VidCom2's frame uniqueness; lower moves more budget to unique "
                               "frames", low_open=True, high_open=True)
# FastVID's defaults: LunarShen/FastVID fastvid_llavaonevision/scripts/eval.sh (LLaVA-OneVision and LLaVA-Video)
MIN_SEGMENTS = OptionSpec("min_segments", 8, int, (1, 2**63), "DySeg's c: cut at least at the c - 1 least similar "
                          "frame transitions", high_open=True)
SEGMENT_TAU = OptionSpec("tau", 0.9, float, (-1.0, 1.0), "DySeg's tau: also cut wherever consecutive frames' "
                         "cosine similarity is below tau")
CONTEXT_SHARE = OptionSpec("context_share", 0.4, float, (0.0, 1.0), "STPrune's d: share of each frame's budget "
                           "given to merged anchor tokens; the rest are its most salient tokens")
ANCHOR_STRIDE = OptionSpec("anchor_stride", 4, int, (1, 2**63), "DTM's p: anchor tokens come from every p-th frame "
                           "of a segment, counted back from its last", high_open=True)
ANCHOR_WEIGHT = OptionSpec("beta", 0.6, float, (0.0, 1.0), "DTM's beta: least weight of an anchor in its merged "
                           "token, max(beta, 1 / (members + 1))")

# HoliTom's defaults: its code's environment defaults (holitom/llava_arch.py, commit e9b2972); T=0.80 in its scripts.
HOLITOM = (
    OptionSpec("tau", 0.8, float, (-1.0, 1.0), "cosine a cell needs to consecutive frames to be static (HoliTom's T)"),
    OptionSpec("contextual_share", 0.0, float, (0.0, 1.0),
               "share of each frame's budget merged by DPC-kNN instead of kept by attention (HoliTom's D)"),
    OptionSpec("beta", 0.6, float, (0.0, 1.0), "weight of a cluster's centre in its merged token (HoliTom's Beta)"),
    OptionSpec("knn", 7, int, (1, 2**63), "neighbours of DPC-kNN's density, at most the clusters (HoliTom's K)",
               high_open=True),
    OptionSpec("max_window", 1024, int, (1, 2**63), "longest window of frames merged temporally", high_open=True),
)
# FlashVID's defaults: flashvid/__init__.py and scripts/llava_ov.sh (commit 1d37422); Qwen-VL scripts differ.
FLASHVID = (
    OptionSpec("alpha", 0.7, float, (0.0, 1.0), "share of each frame's budget chosen by ADTS; the rest is merged"),
    OptionSpec("relevance", True, bool, None, "ADTS v2: weigh by event relevance too (the Qwen-VL scripts: false)"),
    OptionSpec("temporal_threshold", 0.8, float, (-1.0, 1.0), "cosine above which a token merges into the previous "
               "frame's"),
    OptionSpec("segment_threshold", 0.9, float, (-1.0, 1.0), "frame-to-frame cosine below which a segment starts"),
    OptionSpec("min_segments", 8, int, (1, 2**63), "segments at least, by cutting the least similar transitions "
               "(the Qwen-VL scripts: 4)", high_open=True),
)

BUILTIN: dict[str, Builtin] = {
    "none": Builtin("fpcli.prune.baselines", keeps_all=True),
    "uniform": Builtin("fpcli.prune.baselines"),
    "random": Builtin("fpcli.prune.baselines", (SEED,)),
    "gprune": Builtin("fpcli.prune.gprune"),
    "divprune": Builtin("fpcli.prune.divprune"),
    "dycoke": Builtin("fpcli.prune.dycoke"),
    "forestprune": Builtin("fpcli.prune.forest", (TAU_S, TAU_P, NODE_RATIO)),
    "visionzip": Builtin("fpcli.prune.visionzip", (DOMINANT_SHARE,), extras=("vision_attention", "vision_keys")),
    "vidcom2": Builtin("fpcli.prune.vidcom2", (FRAME_TEMPERATURE,)),
    "fastvid": Builtin("fpcli.prune.fastvid", (MIN_SEGMENTS, SEGMENT_TAU, CONTEXT_SHARE, ANCHOR_STRIDE, ANCHOR_WEIGHT)),
    "holitom": Builtin("fpcli.prune.holitom", HOLITOM, extras=("vision_attention",)),
    "flashvid": Builtin("fpcli.prune.flashvid", FLASHVID, extras=("vision_attention",)),
}
