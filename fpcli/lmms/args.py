"""lmms-eval's `--model_args` for the `forestprune` model, checked by the declarations the CLI uses.

    pretrained=llava-video-7b,method=forestprune,ratio=0.9,frames=64,tau_s=0.85

Keys: the model's (pretrained, layout, device, dtype, attn: what `load_model` takes, as `--model` etc.), the run's
(method, ratio or budget, frames or fps, max_pixels: `ask`'s options, checked by RunSettings.check as the CLI's are) and
any option of the method by its declared name (its OptionSpec parses and range-checks it, as `--opt` does).
lmms-eval has already turned each value into a bool, int, float or string (its `handle_arg_string`), so an option
is parsed from that value's text, exactly as if it came from `--opt name=text`. A bad key or value raises
ModelArgsError, one line naming it, before the model loads.

`budget=K` keeps K visual tokens of every clip (`VideoLLM.start(budget=)`; a clip with fewer keeps them all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from fpcli.run.settings import DEFAULT_DEVICE, RunSettings
from fpcli.errors import InputError
from fpcli.model import ATTENTION_NAMES
from fpcli.model.methods import options_of, validate_method

MODEL_KEYS = ("pretrained", "layout", "device", "dtype", "attn")
RUN_KEYS: dict[str, type] = {"method": str, "ratio": float, "budget": int, "frames": int, "fps": float,
                             "max_pixels": int}
# lmms-eval passes these to every model it builds; requests are answered one at a time on a shared prefix here.
LMMS_EVAL_KEYS = ("batch_size", "max_batch_size")


class ModelArgsError(InputError):
    """A --model_args key or value that forestprune does not take; the message names it."""

    def __init__(self, what: str) -> None:
        super().__init__(f"forestprune --model_args: {what}")


@dataclass(frozen=True)
class ModelArgs:
    """What the `forestprune` model of lmms-eval runs with."""

    pretrained: str  # a profile name, a hub id or a checkpoint folder (fpcli.model.resolve_model)
    run: RunSettings  # pruning and sampling, as `forestprune ask` takes them
    layout: Optional[str] = None
    device: str = DEFAULT_DEVICE
    dtype: str = "auto"
    attn: str = ATTENTION_NAMES[0]
    budget: Optional[int] = None  # visual tokens to keep per clip; run.ratio is None then


def _typed(name: str, value: Any, kind: type) -> Any:
    """`value` as lmms-eval parsed it, in the type the key takes (an int is accepted for a float)."""
    if kind is str:
        return str(value)
    accepted = (int, float) if kind is float else (kind,)
    if isinstance(value, bool) or not isinstance(value, accepted):
        what = "a number" if kind is float else "an integer"
        raise ModelArgsError(f"{name} must be {what}, got {value!r}")
    return kind(value)


def parse_model_args(args: dict[str, Any]) -> ModelArgs:
    """The checked settings of `args` (key -> value as lmms-eval parsed it); ModelArgsError names a bad one."""
    given = {str(key).replace("-", "_"): value for key, value in args.items() if value is not None}
    for key in LMMS_EVAL_KEYS:
        given.pop(key, None)
    if "pretrained" not in given:
        raise ModelArgsError("pretrained is required (a profile name, a Hugging Face id or a checkpoint folder)")
    model = {key: str(given.pop(key)) for key in MODEL_KEYS if key in given}
    run = {key: _typed(key, given.pop(key), kind) for key, kind in RUN_KEYS.items() if key in given}
    budget = run.pop("budget", None)
    if budget is not None and "ratio" in run:
        raise ModelArgsError("give ratio or budget, not both")
    if budget is not None and budget < 1:
        raise ModelArgsError(f"budget must be >= 1 (visual tokens kept per clip), got {budget}")
    method = run.get("method", RunSettings.method)
    try:
        accepted = options_of(method)
        for name in given:
            if name not in accepted:
                allowed = ", ".join([*MODEL_KEYS, *RUN_KEYS, *accepted])
                raise ModelArgsError(f"unknown key {name!r} (allowed with method {method}: {allowed})")
        options = {name: accepted[name].parse(str(value)) for name, value in given.items()}
        settings = RunSettings(**run, method_options=options)
        settings.check()
        if budget is not None:  # its ratio depends on the clip: the method's options are checked at any ratio
            validate_method(0.5, method, **settings.prune_options())
    except ValueError as exc:
        raise ModelArgsError(str(exc)) from None
    return ModelArgs(budget=budget, run=settings, **model)
