"""The exact text a model receives after the video: question, options and the protocol's prompts.

The chat template, the system prompt and the visual tokens come before this text (fpcli.model);
what is built here is the user turn's text, as the source scripts build it character for character.
"""

from __future__ import annotations

from collections.abc import Callable

from fpcli.eval import protocols as p
from fpcli.eval.items import EvalItem


def _lettered(item: EvalItem) -> str:
    return "\n".join(f"{letter}. {option}" for letter, option in zip(item.letters, item.options))


def _parenthesised(item: EvalItem) -> str:
    return "".join(f"({letter}) {option}\n" for letter, option in zip(item.letters, item.options))


def _question(item: EvalItem, bp: p.BenchProtocol) -> str:
    return item.question.strip() if bp.strip_question else item.question


def _plain(item: EvalItem, bp: p.BenchProtocol, post: str) -> str:
    return f"{bp.pre_prompt}{_question(item, bp)}\n{_lettered(item)}{post}"


def _mvbench_paper(item: EvalItem, bp: p.BenchProtocol, post: str) -> str:
    # model_mvbench.py qa_template: "Question: q\nOptions:\n(A) c\n...", right-stripped
    return f"{bp.pre_prompt}Question: {_question(item, bp)}\nOptions:\n{_parenthesised(item)}".rstrip() + post


def _mvbench_lmms(item: EvalItem, bp: p.BenchProtocol, post: str) -> str:
    # mvbench_doc_to_text: no space after "Question:", "Option:" singular, every option line ends in \n
    return f"{bp.pre_prompt}Question:{_question(item, bp)}\nOption:\n{_parenthesised(item)}{post}"


def _videomme_lmms(item: EvalItem, bp: p.BenchProtocol, post: str) -> str:
    return f"{bp.pre_prompt}{p.VIDEOMME_LMMS_INSTRUCTION}\n{_question(item, bp)}\n{_lettered(item)}\n{post}"


def _question_full(item: EvalItem, bp: p.BenchProtocol, post: str) -> str:
    return f"{bp.pre_prompt}{item.extra.get('question_full', item.question)}{post}"


_STYLES: dict[str, Callable[[EvalItem, p.BenchProtocol, str], str]] = {
    p.LETTERED: _plain,
    p.MVBENCH_PAPER: _mvbench_paper,
    p.MVBENCH_LMMS: _mvbench_lmms,
    p.VIDEOMME_LMMS: _videomme_lmms,
    p.QUESTION_FULL: _question_full,
}


def build_prompt(item: EvalItem, bench_protocol: p.BenchProtocol, layout: str = "video") -> str:
    """The question text for `item` under `bench_protocol`, for a model of `layout`."""
    p.check_layout(layout)
    return _STYLES[bench_protocol.prompt_style](item, bench_protocol, bench_protocol.post_prompt_for(layout))
