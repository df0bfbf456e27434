"""Prompts: the whole text after the video, per protocol and benchmark, against the sources' formats."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_eval import make_jsonl, make_longvideobench, make_mlvu, make_mvbench, make_nextqa, make_videomme

from fpcli.eval import EvalInputError, build_prompt, get_protocol, load_bench

PAPER_POST = "\nPlease answer directly with only the letter of the correct option and nothing else."


def _first(bench: str, root: Path):
    builders = {"videomme": make_videomme, "mlvu": make_mlvu, "longvideobench": make_longvideobench,
                "mvbench": make_mvbench, "nextqa": make_nextqa, "jsonl": make_jsonl}
    return load_bench(bench, builders[bench](root))[0]


PAPER = {
    "videomme": "How many scenes are shown?\nA. One.\nB. Two.\nC. Three.\nD. Four." + PAPER_POST,
    "mlvu": "What color is the square?\nA. white\nB. red" + PAPER_POST,
    "longvideobench": "What returns at the end?\nA. the first scene\nB. a new scene\nC. nothing" + PAPER_POST,
    "mvbench": "Question: What happens in action_sequence?\nOptions:\n(A) it stops\n(B) it moves\n(C) it turns"
               + PAPER_POST,
    "nextqa": "why did the square move \nA. to hide\nB. to eat\nC. it was pushed\nD. it fell\nE. it flew" + PAPER_POST,
    "jsonl": "How many scenes?\nA. 1\nB. 2\nC. 3" + PAPER_POST,
}

LMMS = {
    "videomme": "Select the best answer to the following multiple-choice question based on the video and the subtitles."
                " Respond with only the letter (A, B, C, or D) of the correct option.\nHow many scenes are shown?\n"
                "A. One.\nB. Two.\nC. Three.\nD. Four.\n\n"
                "Answer with the option's letter from the given choices directly.",
    "mlvu": "What color is the square?\n(A) white\n(B) red\nOnly give the best option.\nBest option: (",
    "longvideobench": "What returns at the end?\nA. the first scene\nB. a new scene\nC. nothing\n"
                      "Answer with the option's letter from the given choices directly.\n",
    "mvbench": "Question:What happens in action_sequence?\nOption:\n(A) it stops\n(B) it moves\n(C) it turns\n"
               "Only give the best option.\n",
    "nextqa": "why did the square move\nA. to hide\nB. to eat\nC. it was pushed\nD. it fell\nE. it flew",
    "jsonl": "How many scenes?\nA. 1\nB. 2\nC. 3\nAnswer with the option's letter from the given choices directly.",
}


@pytest.mark.parametrize("bench", list(PAPER))
@pytest.mark.parametrize("layout", ["onevision", "video"])
def test_paper_prompts(tmp_path: Path, bench: str, layout: str) -> None:
    bp = get_protocol("paper").for_bench(bench)
    assert build_prompt(_first(bench, tmp_path), bp, layout) == PAPER[bench]
    assert bp.time_instruction is False  # the authors' scripts add no "The video lasts for ..." line


@pytest.mark.parametrize("bench", list(LMMS))
def test_lmms_eval_prompts_onevision(tmp_path: Path, bench: str) -> None:
    assert build_prompt(_first(bench, tmp_path), get_protocol("lmms-eval").for_bench(bench), "onevision") == LMMS[bench]


def test_lmms_eval_videomme_llava_vid_post_prompt(tmp_path: Path) -> None:
    prompt = build_prompt(_first("videomme", tmp_path), get_protocol("lmms-eval").for_bench("videomme"), "video")
    assert prompt.endswith("C. Three.\nD. Four.\nThe best answer is:")


def test_protocol_table_values() -> None:
    paper, lmms = get_protocol("paper"), get_protocol("lmms-eval")
    assert {b: bp.frames["video"] for b, bp in paper.benches.items() if b != "jsonl"} == {
        "videomme": 64, "mlvu": 32, "longvideobench": 64, "mvbench": 64, "nextqa": 64}
    assert paper.for_bench("videomme").prune_options == {"forestprune": {"tau_s": 0.8, "tau_p": 0.5, "node_ratio": 0.5}}
    assert paper.for_bench("mlvu").prune_options == {"forestprune": {"tau_s": 0.9, "tau_p": 0.8, "node_ratio": 0.5}}
    assert paper.for_bench("mvbench").sampling("video", 2.0, 6.5) == {
        "num_frames": 64, "index_rule": "segment", "start": 2.0, "end": 6.5}
    assert paper.for_bench("nextqa").sampling("onevision", 2.0, 6.5) == {"num_frames": 64, "index_rule": "floor"}
    assert lmms.for_bench("mvbench").sampling("onevision", 2.0, 6.5) == {
        "num_frames": 32, "index_rule": "floor", "start": 2.0, "end": 6.5}
    assert lmms.for_bench("mvbench").sampling("onevision") == {"num_frames": 32, "index_rule": "floor"}
    assert lmms.for_bench("videomme").sampling("video") == {
        "num_frames": 20, "index_rule": "floor", "fps": 1.0, "max_frames": 20}
    assert lmms.for_bench("videomme").sampling("video", frames=64) == {
        "num_frames": 64, "index_rule": "floor", "fps": 1.0, "max_frames": 64}
    assert [lmms.for_bench(b).max_new_tokens for b in ("videomme", "mlvu", "longvideobench", "mvbench", "nextqa")] == [
        16, 16, 32, 16, 1024]


def test_unknown_protocol_and_layout(tmp_path: Path) -> None:
    with pytest.raises(EvalInputError, match=r"^unknown protocol 'vlmeval'; choose one of paper, lmms-eval$"):
        get_protocol("vlmeval")
    with pytest.raises(EvalInputError, match=r"^unknown model layout 'image'; one of onevision, video$"):
        build_prompt(_first("jsonl", tmp_path), get_protocol("paper").for_bench("jsonl"), "image")
