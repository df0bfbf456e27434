"""What `forestprune methods` shows: every method of the catalogue (fpcli.model.methods) with its kind, where it
prunes, and each option's type, default, range and help.

Built from the same registries that check `--method` and `--opt`, so the listing can never disagree with what a run
accepts; methods registered in Python appear as soon as they are registered. Torch-free.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

from fpcli.model.methods import is_in_llm, is_two_stage, method_names, options_of
from fpcli.prune.options import OptionSpec

PRE_LLM, IN_LLM, TWO_STAGE = "pre-llm", "in-llm", "two-stage"
WHERE = {
    PRE_LLM: "before the LLM: drops or merges visual tokens of the vision tower's output",
    IN_LLM: "inside the LLM: every visual token enters, the decoder layers drop or merge them",
    TWO_STAGE: "before the LLM, then inside it: a share enters, a decoder layer keeps the budget of them",
}


@dataclass(frozen=True)
class OptionInfo:
    """One option as listed: `type` is 'float', 'int', 'bool', 'str' or 'any'; `range` like '[-1, 1]' or None."""

    name: str
    type: str
    default: Any
    range: Optional[str]
    help: str

    @classmethod
    def of(cls, spec: OptionSpec) -> OptionInfo:
        return cls(spec.name, "any" if spec.type is None else spec.type.__name__, spec.default,
                   spec.interval or None, spec.help)


@dataclass(frozen=True)
class MethodInfo:
    """One method as listed: `kind` is 'pre-llm', 'in-llm' or 'two-stage'; `where` says what that means."""

    name: str
    kind: str
    where: str
    options: tuple[OptionInfo, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "where": self.where,
                "options": [asdict(option) for option in self.options]}


def method_info(name: str) -> MethodInfo:
    """`name` as listed; ValueError for an unknown method."""
    kind = IN_LLM if is_in_llm(name) else TWO_STAGE if is_two_stage(name) else PRE_LLM
    options = tuple(OptionInfo.of(spec) for spec in options_of(name).values())
    return MethodInfo(name, kind, WHERE[kind], options)


def catalogue() -> list[MethodInfo]:
    """Every method, in `method_names` order (pre-LLM first, then in-LLM)."""
    return [method_info(name) for name in method_names()]


def method_options(method: str, given: dict[str, Any]) -> dict[str, Any]:
    """Every option of `method` with the value a run used: `given` (already checked) over the declared defaults,
    in declaration order; a method that takes any option (registered in Python with **options) keeps the others.
    What the JSON forms record as `method_options`."""
    return {**{name: spec.default for name, spec in options_of(method).items()}, **given}
