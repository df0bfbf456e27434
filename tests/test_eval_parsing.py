"""Answer parsing: the sources' parsers on real-looking responses, quirks included."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from fpcli.eval import get_protocol, parse_response
from fpcli.eval.items import make_item
from fpcli.eval.parsing import extract_mcq, mvbench_normalise, parse_lvb, parse_mmmu, prediction_rng

CHOICES = ["A", "B", "C", "D"]
INDEX2ANS = {"A": "a dog", "B": "the man", "C": "a red bicycle", "D": "nothing"}

# response -> (MMMU, lmms-eval extract_mcq, lmms-eval LongVideoBench, lmms-eval MVBench normalisation)
TABLE = {
    "B": ("B", "B", "B", "B"),
    "(C) the man": ("C", "C", "C", "C"),
    "The answer is D.": ("D", "D", "D", "D"),
    "I think it is A or B": ("B", "B", "A", "A"),
    "The person is riding a red bicycle in the park": ("C", "", None, "A"),  # MVBench reads the article "a"
    "A. a dog": ("A", "A", "A", "A"),
    "D. A book": ("A", "D", "D", "D"),  # MMMU's "A " match wins over "D." (the quirk lmms-eval's LVB parser fixes)
    "Best option: (B) the man": ("B", "B", "B", "B"),
}


@pytest.mark.parametrize(("response", "expected"), list(TABLE.items()))
def test_parsers_table(response: str, expected: tuple) -> None:
    mmmu, mcq, lvb, mvbench = expected
    assert parse_mmmu(response, CHOICES, INDEX2ANS, None) == (mmmu, False)
    assert extract_mcq(response, CHOICES) == mcq
    if lvb is not None:
        assert parse_lvb(response, CHOICES, random.Random(0)) == (lvb, False)
    assert mvbench_normalise(response) == mvbench


def test_nothing_matches() -> None:
    # a short text naming an option only by its words (<= 5 words) and an empty answer: no match
    for response in ("riding a red bicycle", ""):
        assert parse_mmmu(response, CHOICES, INDEX2ANS, None) == ("", False)
        letter, fallback = parse_mmmu(response, CHOICES, INDEX2ANS, random.Random(7))
        assert fallback is True and letter == random.Random(7).choice(CHOICES)
    assert extract_mcq("", CHOICES) == "" and extract_mcq("   ", CHOICES) == ""
    assert parse_lvb("no letter here at all", CHOICES, random.Random(3)) == (random.Random(3).choice(CHOICES), True)
    assert mvbench_normalise("") == ""


def test_mvbench_normalise_keeps_unreadable_text() -> None:
    assert mvbench_normalise("Hmm, hard to tell!") == "hmm hard to tell"


def _item(answer: str = "B", options: tuple[str, ...] = ("a dog", "the man", "a red bicycle", "nothing")):
    return make_item(id="q1", bench="jsonl", video=Path("v.mp4"), question="Who?", options=list(options),
                     answer=answer, source="t")


def test_parse_response_paper() -> None:
    bp = get_protocol("paper").for_bench("jsonl")
    assert parse_response(_item(), bp, "(B) the man", method="forestprune", ratio=0.9).to_dict() == {
        "parsed": "B", "fallback": False, "correct": True}
    assert parse_response(_item(), bp, "The answer is D.", method="none", ratio=0.0).correct is False
    first = parse_response(_item(), bp, "", method="forestprune", ratio=0.9, seed=1)
    again = parse_response(_item(), bp, "", method="forestprune", ratio=0.9, seed=1)
    assert first == again and first.fallback is True and first.parsed in CHOICES
    assert first.parsed == prediction_rng(1, _item(), "forestprune", 0.9).choice(CHOICES)
    ratios = (0.5, 0.6, 0.7, 0.8, 0.9)
    picks = {parse_response(_item(), bp, "", method="forestprune", ratio=r, seed=1).parsed for r in ratios}
    assert len(picks) > 1  # each (item, method, ratio) has its own seeded pick


def test_paper_mlvu_counts_no_match_as_wrong_and_fixes_letters() -> None:
    bp = get_protocol("paper").for_bench("mlvu")
    assert parse_response(_item(), bp, "", method="none", ratio=0).to_dict() == {
        "parsed": "", "fallback": False, "correct": False}
    # the authors pass A-E whatever the option count: an "E" is read, and wrong
    assert parse_response(_item(), bp, "E", method="none", ratio=0).parsed == "E"


def test_parse_response_lmms_eval() -> None:
    lmms = get_protocol("lmms-eval")
    assert parse_response(_item(), lmms.for_bench("mvbench"), "(B) the man", method="none", ratio=0).correct is True
    empty = parse_response(_item(), lmms.for_bench("mvbench"), "", method="none", ratio=0)
    assert empty.to_dict() == {"parsed": "", "fallback": False, "correct": False}
    assert parse_response(_item(), lmms.for_bench("mlvu"), "B) the man", method="none", ratio=0).correct is True
    lvb = lmms.for_bench("longvideobench")
    unsure = parse_response(_item(), lvb, "I cannot tell.", method="none", ratio=0)
    assert unsure.fallback is True and unsure.parsed in CHOICES  # no capital A-E at all: a seeded random pick
    # the first capital A-E anywhere counts: the "C" of "Clearly", not the B
    assert parse_response(_item(), lvb, "Clearly B", method="none", ratio=0).to_dict() == {
        "parsed": "C", "fallback": False, "correct": False}
