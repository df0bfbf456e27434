"""Answer parsing: from a model's free-form response to an option letter, as each source scores it.

Every parser is a re-implementation of its source's behaviour (matching order, tie-breaking, quirks
included), so scores are comparable with the published ones:

- `parse_mmmu`: MMMU's parse_multi_choice_response (MMMU eval_utils.py), as copied into the authors'
  llava/eval/model_*.py and lmms-eval's nextqa/utils.py. Its "nothing matched" case is a random
  letter in videomme/nextqa scripts and "" in the others; the random pick is seeded per prediction
  and reported as a fallback, so runs are reproducible and the pick is visible.
- `extract_mcq`: lmms-eval's _task_utils/mcq_extract.extract_mcq_answer (VideoMME, MLVU).
- `parse_lvb`: lmms-eval's longvideobench parse_multi_choice_response.
- `mvbench_normalise`: the `process` step of lmms-eval's mvbench mcq_acc.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

from fpcli.eval import protocols as p
from fpcli.eval.items import LETTERS, EvalItem

_MMMU_STRIP = (",", ".", "!", "?", ";", ":", "'")


@dataclass(frozen=True)
class Parsed:
    """What a response was read as: `parsed` a letter ("" when none), `fallback` True when it is a
    random pick because nothing in the response matched, `correct` against the item's answer."""

    parsed: str
    fallback: bool
    correct: bool

    def to_dict(self) -> dict[str, object]:
        return {"parsed": self.parsed, "fallback": self.fallback, "correct": self.correct}


def parse_mmmu(
    response: str, choices: list[str], index2ans: dict[str, str], rng: random.Random | None
) -> tuple[str, bool]:
    """(letter, fallback). rng None: "" when nothing matches, else rng.choice(choices)."""
    for char in _MMMU_STRIP:
        response = response.strip(char)
    response = f" {response} "  # spaces so "A " also matches a final letter
    candidates = [c for c in choices if f"({c})" in response]
    bracketed = bool(candidates)
    if not candidates:
        candidates = [c for c in choices if f"{c} " in response]
    if not candidates:
        candidates = [c for c in choices if f"{c}." in response]
    by_content = False
    if not candidates and len(response.split()) > 5:  # long answers may name an option by its text
        candidates = [letter for letter, text in index2ans.items() if text.lower() in response.lower()]
        by_content = bool(candidates)
    if not candidates:
        return ("", False) if rng is None else (rng.choice(choices), True)
    if len(candidates) == 1:
        return candidates[0], False
    if by_content:
        positions = [response.lower().rfind(index2ans[c].lower()) for c in candidates]
    elif bracketed:
        positions = [response.rfind(f"({c})") for c in candidates]
    else:
        positions = [response.rfind(f" {c} ") for c in candidates]
    return candidates[positions.index(max(positions))], False  # the last one mentioned; ties: first


_MCQ_PHRASES = (
    "the answer is", "answer is", "the correct answer is", "correct answer is", "the best answer is",
    "best answer is", "the correct option is", "correct option is", "the best option is", "best option is",
    "the choice is", "choice is", "the correct choice is", "correct choice is", "i choose", "i select",
    "i pick", "my answer is", "my choice is", "옵션", "정답은", "답은", "답:", "答案是", "答案为", "选", "答えは",
)
_MCQ_PRIORITY = {"start": 10, "end": 9, "phrase": 7, "parentheses": 6, "period": 5, "colon": 4,
                 "right_paren": 3, "space": 2, "fallback": 0}


def extract_mcq(response: str, choices: list[str]) -> str:
    """lmms-eval's extract_mcq_answer: the best-ranked (format priority, then last position) letter."""
    if not response or not response.strip():
        return ""
    text = response.strip()
    for char in (*_MMMU_STRIP, '"'):
        text = text.strip(char)
    text = f" {text} "
    found: list[tuple[str, int, str]] = []
    for pattern, kind in (("({})", "parentheses"), ("{}.", "period"), ("{}:", "colon"), ("{})", "right_paren"),
                          ("{} ", "space")):
        found += [(c, text.rfind(pattern.format(c)), kind) for c in choices if pattern.format(c) in text]
    lower = text.lower()
    for phrase in _MCQ_PHRASES:
        at = lower.find(phrase)
        if at != -1:
            after = at + len(phrase)
            found += [(c, text.find(c, after), "phrase") for c in choices if text.find(c, after) != -1]
    bare = text.strip()
    found += [(c, 0, "start") for c in choices if bare.startswith(c) and (len(bare) == 1 or not bare[1].isalpha())]
    found += [(c, len(text) - 1, "end") for c in choices
              if bare.endswith(c) and (len(bare) == 1 or not bare[-2].isalpha())]
    if not found:
        found = [(c, text.rfind(c), "fallback") for c in choices if c in text]
    if not found:
        return ""
    # the source sorts descending by (priority, position), a stable sort: the first of equal keys wins
    ranked = sorted(found, key=lambda f: (_MCQ_PRIORITY[f[2]], f[1]), reverse=True)
    return ranked[0][0]


_LVB_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer",
                 "The best option is", "The correct option is", "Best answer:", "Best option:")


def parse_lvb(response: str, choices: list[str], rng: random.Random) -> tuple[str, bool]:
    """lmms-eval's longvideobench parser: the first capital A-E after dropping answer phrases; a
    random option when there is none (or a long answer without any)."""
    text = response.strip()
    for prefix in _LVB_PREFIXES:
        text = text.replace(prefix, "")
    match = re.search(r"[ABCDE]", text)
    if match is None:
        return rng.choice(choices), True
    return match.group(0), False


_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_OPTION_PREFIX = re.compile(r"^([A-E])\.\s*(.+)$", re.IGNORECASE)
_LETTER = re.compile(r"\b([A-E])\b", re.IGNORECASE)


def mvbench_normalise(text: str) -> str:
    """mcq_acc's `process`: a letter when one can be read, else the cleaned lower-case text."""
    match = _OPTION_PREFIX.match(text.strip())
    if match:
        return match.group(1).upper()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    out = text
    for mark in _PUNCT:
        if f"{mark} " in text or f" {mark}" in text or _COMMA_STRIP.search(text) is not None:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    # the source passes re.UNICODE as sub's `count` argument (32): at most 32 periods are removed
    out = _PERIOD_STRIP.sub("", out, count=int(re.UNICODE))
    out = out.strip("'").strip('"').strip(")").strip("(").strip().lower()
    letter = _LETTER.search(out)
    return letter.group(1).upper() if letter else out


def prediction_rng(seed: int, item: EvalItem, method: str, ratio: float) -> random.Random:
    """The random source of one prediction's fallback: the same for the same (item, method, ratio)
    whatever the order, shard or resume."""
    key = f"{seed}\x00{item.bench}\x00{item.id}\x00{method}\x00{ratio!r}".encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


def parse_response(
    item: EvalItem, bench_protocol: p.BenchProtocol, response: str, *, method: str, ratio: float, seed: int = 0
) -> Parsed:
    """Read `response` to `item` the way `bench_protocol` scores it."""
    choices = item.letters if bench_protocol.choices is None else list(LETTERS[: bench_protocol.choices])
    parser = bench_protocol.parser
    fallback = False
    if parser in (p.MMMU, p.MMMU_EMPTY):
        rng = prediction_rng(seed, item, method, ratio) if parser == p.MMMU else None
        parsed, fallback = parse_mmmu(response, choices, item.index2ans(), rng)
    elif parser == p.MCQ_EXTRACT:
        parsed = extract_mcq(response, choices)
    elif parser == p.LVB:
        parsed, fallback = parse_lvb(response, choices, prediction_rng(seed, item, method, ratio))
    elif parser == p.MVBENCH_ACC:
        parsed = "" if response == "" else mvbench_normalise(response)
        return Parsed(parsed, False, parsed == mvbench_normalise(item.answer))
    else:
        raise ValueError(f"unknown parser {parser!r}")
    return Parsed(parsed, fallback, parsed.lower() == item.answer.lower() if parsed else False)
