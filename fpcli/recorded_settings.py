"""The settings that can change a prediction: one record of them, kept with a run's results, compared on resume.

    recorded = settings_record(model="llava-ov-0.5b", checkpoint=..., layout="onevision", dtype="float32",
                               frames=8, method="forestprune", method_options={...}, ratio=0.9, ...)
    check_same(recorded_earlier, recorded, where="results.jsonl (item 'a')", restart="...")   # InputError, exit 2

`forestprune batch` puts the record on each result line (`settings`), `forestprune eval` in its run directory
(settings.json) and on each prediction. Resuming with any setting changed would mix results made two ways under one
name, so it is refused, naming the setting and both values, before any work. A value not recorded by an older
run reads as None (a setting added later, like `budget`, compares equal to its absence). Pure Python: the CLI and
the evaluation layer both use it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Optional

from fpcli.errors import InputError

SETTINGS_KEY = "settings"  # the key of a record's settings, in batch results and eval predictions


@dataclass(frozen=True)
class PredictionSettings:
    """Every setting that can change a prediction. `model` is the name given, `checkpoint` its identity as the
    feature cache computes it (the resolved folder and a hash of its configs and weight headers); frames, fps and
    max_pixels as sampled (None: the model's or the protocol's own rule, decided by the other settings);
    `method_options` every option of the method with its value; `budget` a token budget (None: none given);
    `prompts` the protocol's prompt texts (eval) or None."""

    model: Optional[str]
    checkpoint: Optional[str]
    layout: Optional[str]
    dtype: Optional[str]
    protocol: Optional[str] = None  # before the settings a protocol decides: a change of protocol is named as such
    frames: Optional[int] = None
    fps: Optional[float] = None
    max_pixels: Optional[int] = None
    index_rule: Optional[str] = None
    method: Optional[str] = None
    method_options: dict[str, Any] = field(default_factory=dict)
    ratio: Optional[float] = None
    budget: Optional[int] = None
    prompts: Optional[dict[str, Any]] = None
    max_new_tokens: Optional[int] = None
    temperature: Optional[float] = None
    seed: Optional[int] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SETTING_NAMES: tuple[str, ...] = tuple(PredictionSettings.__dataclass_fields__)


def _shown(value: Any) -> str:
    """A value as the user would type it: 4, 0.9, "paper", {"tau_s": 0.9}; None as `none`."""
    return "none" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def differences(recorded: dict[str, Any], current: dict[str, Any], ignore: Iterable[str] = ()
                ) -> list[tuple[str, Any, Any]]:
    """(setting, recorded value, current value) for each setting that differs, in SETTING_NAMES order; a name
    missing from either side reads as None."""
    skipped = set(ignore)
    return [(name, recorded.get(name), current.get(name)) for name in SETTING_NAMES
            if name not in skipped and recorded.get(name) != current.get(name)]


class SettingsChanged(InputError):
    """Resuming results made with other settings: exit 2, before any work."""


def check_same(recorded: Optional[dict[str, Any]], current: Optional[dict[str, Any]], *, where: str, restart: str,
               now: str = "this run has", ignore: Iterable[str] = ()) -> None:
    """Raise SettingsChanged when `recorded` differs from `current` (either None: not recorded, nothing to
    compare): `where` names what was made with them, `now` what has the current ones, `restart` the ways out."""
    if recorded is None or current is None:
        return
    changed = differences(recorded, current, ignore)
    if changed:
        name, old, new = changed[0]
        more = f" (and {len(changed) - 1} other setting{'s' if len(changed) > 2 else ''})" if len(changed) > 1 else ""
        raise SettingsChanged(f"{where} was made with {name} {_shown(old)}, {now} {name} {_shown(new)}{more}",
                              hint=restart)
