"""Evaluation protocols: every constant that decides a benchmark score, in one table.

A protocol maps each benchmark to a `BenchProtocol`: how frames are sampled, the exact prompt text
after the video, generation length, how an answer is parsed and how scores are aggregated.
`paper` reproduces the authors' released scripts (luminousllsa/ForestPrune, scripts/eval_*.sh and
llava/eval/model_*.py, eval_*.py); `lmms-eval` reproduces EvolvingLMMs-Lab/lmms-eval's task yamls
and utils.py files and its llava_onevision / llava_vid model wrappers. docs/eval.md says where each
value below comes from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from fpcli.eval.errors import EvalInputError

LAYOUTS = ("onevision", "video")  # fpcli.model's token layouts: LLaVA-OneVision, LLaVA-Video

# The authors' post prompt, the same in all five model_*.py files.
PAPER_POST = "\nPlease answer directly with only the letter of the correct option and nothing else."
VIDEOMME_LMMS_INSTRUCTION = (
    "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)
LMMS_LETTER_POST = "\nAnswer with the option's letter from the given choices directly."

# Prompt styles (fpcli.eval.prompts renders them).
LETTERED = "lettered"  # pre + question \n A. opt \n B. opt ... + post
MVBENCH_PAPER = "mvbench-paper"  # Question: q \n Options: \n (A) opt ... (rstripped) + post
MVBENCH_LMMS = "mvbench-lmms"  # Question:q \n Option: \n (A) opt \n ... + post
VIDEOMME_LMMS = "videomme-lmms"  # instruction \n question \n A. opt ... \n post
QUESTION_FULL = "question-full"  # pre + the benchmark's own question text with its options + post (MLVU)

# Parsers (fpcli.eval.parsing implements them).
MMMU = "mmmu"  # parse_multi_choice_response, seeded random letter when nothing matches
MMMU_EMPTY = "mmmu-empty"  # the same, "" (wrong) when nothing matches
MCQ_EXTRACT = "mcq-extract"  # lmms-eval _task_utils/mcq_extract.extract_mcq_answer
LVB = "lvb"  # lmms-eval longvideobench parse_multi_choice_response (first A-E, seeded random fallback)
MVBENCH_ACC = "mvbench-acc"  # lmms-eval mvbench mcq_acc normalisation

# Aggregations (fpcli.eval.scoring).
MICRO = "micro"  # correct / questions
MACRO_CATEGORY = "macro-category"  # mean over categories of their accuracy (MLVU task types)
MACRO_ANSWERED = "macro-answered"  # mean over categories, each over its non-empty responses (MVBench)


@dataclass(frozen=True)
class BenchProtocol:
    """How one benchmark is run and scored under one protocol.

    frames        layout -> frames sampled uniformly
    fps           layout -> sampling rate in frames/s, `frames` then the cap (lmms-eval llava_vid)
    index_rule    "floor" (np.linspace(..., dtype=int)), "round", or "segment" (MVBench midpoints)
    time_bound    sample inside the item's (start, end) when it has one
    choices       letters the parser may return: a fixed count (the authors hard-code A-D / A-E),
                  or None for the item's own options
    prune_options per-method options the protocol fixes (ForestPrune tau_s/tau_p/node ratio)
    """

    bench: str
    frames: dict[str, int]
    index_rule: str
    prompt_style: str
    post_prompt: str
    max_new_tokens: int
    parser: str
    aggregation: str
    pre_prompt: str = ""
    # the qwen_1_5 conversation template's system turn, used by the authors' scripts and lmms-eval's wrappers
    system_prompt: str = "You are a helpful assistant."
    post_prompt_video: str | None = None  # the llava_vid wrapper's own post prompt, when the task has one
    fps: dict[str, float] = field(default_factory=dict)
    time_bound: bool = False
    time_instruction: bool = False
    strip_question: bool = False  # lmms-eval's nextqa strips the question; the authors' script does not
    choices: int | None = None
    prune_options: dict[str, dict[str, float]] = field(default_factory=dict)

    def post_prompt_for(self, layout: str) -> str:
        return self.post_prompt_video if layout == "video" and self.post_prompt_video is not None else self.post_prompt

    def sampling(
        self, layout: str, start: float | None = None, end: float | None = None, *, frames: int | None = None
    ) -> dict[str, Any]:
        """The keyword arguments of fpcli.video.sample_frames (what the feature cache keys on);
        `frames` (a user's --frames) replaces the protocol's count, the rest stays."""
        check_layout(layout)
        count = self.frames[layout] if frames is None else frames
        kwargs: dict[str, Any] = {"num_frames": count, "index_rule": self.index_rule}
        if layout in self.fps:
            kwargs["fps"] = self.fps[layout]
            kwargs["max_frames"] = count
        if self.time_bound and start is not None:
            kwargs["start"], kwargs["end"] = start, end
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    benches: dict[str, BenchProtocol]
    seed: int = 0  # seeds the parsers' random fallback, per prediction
    model: str | None = None  # the model profile the source evaluates, the default on CUDA (None: the CLI's)

    def for_bench(self, bench: str) -> BenchProtocol:
        if bench not in self.benches:
            raise EvalInputError(f"protocol {self.name!r} has no settings for benchmark {bench!r}")
        return self.benches[bench]


def _paper_forest(tau_s: float, tau_p: float) -> dict[str, dict[str, float]]:
    # scripts/eval_*.sh: TAU (the cosine threshold, tau_s here), TAU_SPATIAL (tau_p), GPRUNE_RATIO (node_ratio)
    return {"forestprune": {"tau_s": tau_s, "tau_p": tau_p, "node_ratio": 0.5}}


def _table(defaults: dict[str, Any], rows: dict[str, dict[str, Any]]) -> dict[str, BenchProtocol]:
    """One BenchProtocol per benchmark: the protocol's defaults, overridden by the benchmark's row."""
    return {bench: BenchProtocol(bench=bench, **{**defaults, **row}) for bench, row in rows.items()}


def _frames(n: int) -> dict[str, int]:
    return {"onevision": n, "video": n}


PAPER = Protocol(
    name="paper",
    description="the ForestPrune authors' released evaluation scripts (LLaVA-Video-7B-Qwen2, greedy)",
    model="llava-video-7b",  # scripts/eval_*.sh CKPT=lmms-lab/LLaVA-Video-7B-Qwen2
    benches=_table(
        {"index_rule": "floor", "prompt_style": LETTERED, "post_prompt": PAPER_POST, "max_new_tokens": 4096,
         "parser": MMMU_EMPTY, "aggregation": MICRO, "choices": 5, "prune_options": _paper_forest(0.9, 0.8)},
        {
            "videomme": {"frames": _frames(64), "parser": MMMU, "choices": 4, "prune_options": _paper_forest(0.8, 0.5)},
            "mlvu": {"frames": _frames(32)},
            "longvideobench": {"frames": _frames(64)},
            "mvbench": {"frames": _frames(64), "index_rule": "segment", "time_bound": True,
                        "prompt_style": MVBENCH_PAPER, "max_new_tokens": 1024, "choices": None},
            "nextqa": {"frames": _frames(64), "parser": MMMU},
            "jsonl": {"frames": _frames(64), "parser": MMMU, "choices": None},
        },
    ),
)

LMMS_EVAL = Protocol(
    name="lmms-eval",
    description="lmms-eval's task prompts, extraction and aggregation; its llava_onevision / llava_vid frame counts",
    benches=_table(
        # llava_onevision: max_frames_num=32, np.linspace(..., dtype=int); llava_vid: max_frames_num=20 at
        # fps=1, falling back to 20 uniform frames when the video is longer
        {"frames": {"onevision": 32, "video": 20}, "fps": {"video": 1.0}, "index_rule": "floor",
         "prompt_style": LETTERED, "max_new_tokens": 16, "aggregation": MICRO},
        {
            "videomme": {"prompt_style": VIDEOMME_LMMS, "post_prompt": LMMS_LETTER_POST,
                         "post_prompt_video": "The best answer is:", "parser": MCQ_EXTRACT, "choices": 4},
            "mlvu": {"prompt_style": QUESTION_FULL, "post_prompt": "\nOnly give the best option.\nBest option: (",
                     "parser": MCQ_EXTRACT, "choices": 4, "aggregation": MACRO_CATEGORY},
            "longvideobench": {"post_prompt": "\nAnswer with the option's letter from the given choices directly.\n",
                               "max_new_tokens": 32, "parser": LVB},
            # lmms-eval reads pre-cut clips (no bound); on the authors' full-length videos the bound
            # stands in for the cut
            "mvbench": {"prompt_style": MVBENCH_LMMS, "post_prompt": "Only give the best option.\n",
                        "parser": MVBENCH_ACC, "aggregation": MACRO_ANSWERED, "time_bound": True},
            "nextqa": {"post_prompt": "", "max_new_tokens": 1024, "parser": MMMU, "choices": 5, "strip_question": True},
            "jsonl": {"post_prompt": LMMS_LETTER_POST, "parser": MCQ_EXTRACT},
        },
    ),
)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (PAPER, LMMS_EVAL)}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise EvalInputError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise EvalInputError(f"unknown model layout {layout!r}; one of {', '.join(LAYOUTS)}")
