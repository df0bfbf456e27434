"""What a pruning method's option is: its name, default, type, allowed range and help, in one declaration.

`OptionSpec.check` is the one range check of an option, whether the value comes from Python (`prune(...,
tau_s=0.9)`), a config file or the command line (`OptionSpec.parse` turns `--opt tau_s=0.9` text into the
declared type first). Torch-free, so the CLI can list options and check them before importing torch.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Optional

_KINDS = {bool: "a boolean", int: "an int", float: "a number", str: "a string"}


def _bound(value: float) -> str:
    """2**63 rather than 9223372036854775808; other bounds as written."""
    if isinstance(value, int) and value >= 2**32 and value & (value - 1) == 0:
        return f"2**{value.bit_length() - 1}"
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class OptionSpec:
    """One keyword option of a pruning method.

    type: bool, int, float or str; None accepts any value (an option of a user's method whose default says
    nothing about its type). range: (low, high) bounds of a number, inclusive unless low_open / high_open.
    """

    name: str
    default: object
    type: Optional[type] = None
    range: Optional[tuple[float, float]] = None
    help: str = ""
    low_open: bool = False
    high_open: bool = False

    @property
    def interval(self) -> str:
        """'[-1, 1]', '(0, 1]', '[0, 2**63)'; '' without a range."""
        if self.range is None:
            return ""
        low, high = self.range
        return f"{'(' if self.low_open else '['}{_bound(low)}, {_bound(high)}{')' if self.high_open else ']'}"

    def describe(self) -> str:
        """'in [-1, 1], default 0.9' for help texts."""
        where = f"in {self.interval}, " if self.range is not None else ""
        return f"{where}default {self.default!r}"

    def check(self, value: object) -> object:
        """`value` in the declared type (an int is accepted for a float), or ValueError naming the option."""
        if self.type is None:
            return value
        kind = _KINDS[self.type]
        if self.type is float:
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        else:
            ok = isinstance(value, self.type) and (self.type is bool or not isinstance(value, bool))
        if ok and self.range is not None:
            low, high = self.range
            ok = (low < value if self.low_open else low <= value) and (value < high if self.high_open else value <= high)
        if not ok:  # NaN fails every comparison above
            where = f" in {self.interval}" if self.range is not None else ""
            raise ValueError(f"{self.name} must be {kind}{where}, got {value!r}")
        return float(value) if self.type is float else value

    def parse(self, text: str) -> object:
        """Command-line text (`--opt name=text`) -> the checked value."""
        if self.type is None or self.type is str:
            return self.check(text)
        if self.type is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"{self.name} must be true or false, got {text!r}")
            return lowered in ("true", "1", "yes")
        try:
            value = self.type(text)
        except ValueError:
            raise ValueError(f"{self.name} must be {_KINDS[self.type]}, got {text!r}") from None
        return self.check(value)
