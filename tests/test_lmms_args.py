"""lmms-eval's --model_args for the `forestprune` model (fpcli.lmms.args): the CLI's checks, our messages, and the
budget -> ratio conversion. Torch-free and lmms-eval-free: the main suite runs them."""

from __future__ import annotations

import pytest

from fpcli.lmms.args import ModelArgsError, parse_model_args


def test_the_issue_command_s_args() -> None:
    args = parse_model_args({"pretrained": "llava-video-7b", "method": "forestprune", "ratio": 0.9, "frames": 64,
                             "tau_s": 0.85, "batch_size": 1, "device": None})
    assert (args.pretrained, args.run.method, args.run.ratio, args.run.frames) == ("llava-video-7b", "forestprune",
                                                                                   0.9, 64)
    assert args.run.method_options == {"tau_s": 0.85}
    assert (args.device, args.dtype, args.attn, args.budget) == ("auto", "auto", "sdpa", None)
    assert args.run.prune_ratio == 0.9 and args.budget is None


def test_defaults_are_ask_s() -> None:
    """No method, no ratio: forestprune at 0.9; method none alone: ratio 0; random gets ask's seed 0."""
    assert parse_model_args({"pretrained": "m"}).run.prune_ratio == 0.9
    assert parse_model_args({"pretrained": "m", "method": "none"}).run.prune_ratio == 0.0
    assert parse_model_args({"pretrained": "m", "method": "random"}).run.prune_options() == {"seed": 0}


def test_options_are_typed_by_their_declaration() -> None:
    """lmms-eval hands 2 as an int and true as a bool; the declared type decides (K is an int, an in-LLM method's)."""
    args = parse_model_args({"pretrained": 7, "method": "fastv", "K": 3, "ratio": 0})
    assert args.pretrained == "7"
    assert args.run.method_options == {"K": 3}


@pytest.mark.parametrize(("args", "message"), [
    ({"method": "forestprune"}, "pretrained is required"),
    ({"pretrained": "m", "method": "nope"}, "unknown method 'nope'; available: none, uniform"),
    ({"pretrained": "m", "tau_s": 3}, "tau_s must be a number in [-1, 1], got 3.0"),
    ({"pretrained": "m", "K": 2}, "unknown key 'K' (allowed with method forestprune: pretrained, layout"),
    ({"pretrained": "m", "ratio": 1.5}, "ratio must be in [0, 1), got 1.5"),
    ({"pretrained": "m", "frames": 2.5}, "frames must be an integer, got 2.5"),
    ({"pretrained": "m", "frames": 0}, "frames must be in 1..1024, got 0"),
    ({"pretrained": "m", "fps": True}, "fps must be a number, got True"),
    ({"pretrained": "m", "ratio": 0.5, "budget": 10}, "give ratio or budget, not both"),
    ({"pretrained": "m", "budget": 0}, "budget must be >= 1"),
    ({"pretrained": "m", "method": "none", "budget": 10}, "keeps every token"),
])
def test_a_bad_arg_is_one_line_naming_it(args: dict, message: str) -> None:
    with pytest.raises(ModelArgsError) as raised:
        parse_model_args(args)
    text = str(raised.value)
    assert text.startswith("forestprune --model_args: ") and message in text
    assert "\n" not in text
    assert raised.value.exit_code == 2
