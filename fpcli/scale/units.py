"""Work units: the items of one video go to one worker, so it decodes and encodes that video once and reuses its
features (and, for eval, the prompt-prefix cache) for every question about it.

A video with more than a worker's fair share of the items (ceil(items / workers)) is split into chunks of that
size, so one long list of questions about one video cannot leave the other workers idle. Units come largest first:
handing the biggest ones out first is what balances a pool of workers that each take the next unit when free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Sequence


@dataclass(frozen=True)
class WorkUnit:
    """Items that share a key (a video), with their ids (what the driver counts as reported)."""

    key: str
    ids: tuple[str, ...]
    items: tuple[Any, ...]

    def __len__(self) -> int:
        return len(self.items)

    def rest(self, start: int) -> WorkUnit:
        """The unit without its first `start` items (what is left after a worker died in it)."""
        return WorkUnit(self.key, self.ids[start:], self.items[start:])


def plan_units(items: Sequence[Any], key: Callable[[Any], Hashable], ident: Callable[[Any], str],
               workers: int) -> list[WorkUnit]:
    """Group `items` by `key` (in order of first appearance, items in their order), split groups larger than a
    worker's share, largest units first (stable). Ids must be unique: they are how results are matched."""
    ids = [ident(item) for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError("work items need unique ids")
    groups: dict[Hashable, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(key(item), []).append(index)
    share = max(1, math.ceil(len(items) / max(workers, 1)))
    units = [
        WorkUnit(str(group), tuple(ids[i] for i in chunk), tuple(items[i] for i in chunk))
        for group, members in groups.items()
        for chunk in (members[start:start + share] for start in range(0, len(members), share))
    ]
    return sorted(units, key=len, reverse=True)
