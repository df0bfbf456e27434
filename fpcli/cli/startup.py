"""Start-up in the time line: the seconds a command spends before its first answer that no stage counts (the
interpreter, importing torch and transformers, resolving the model, hashing the clip for the cache key).

The first result of a process gets them as `timing_s.startup`, so that its `total` is the process's wall time up
to that answer, what the user waited; later results get 0, as with `load` (fpcli.cli.runner.LazyModel).
"""

from __future__ import annotations

import os
import time
from typing import Any

from fpcli.model.result import round_seconds

_IMPORTED = time.monotonic()  # the fallback start where /proc cannot tell the process's own
_reported = False


def process_age_s() -> float:
    """Seconds since this process started (Linux: /proc; elsewhere since this module was imported)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            started_ticks = int(stat.read().rpartition(")")[2].split()[19])  # field 22, after the command name
        with open("/proc/uptime", encoding="ascii") as uptime:
            up = float(uptime.read().split()[0])
        return max(0.0, up - started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


def with_startup(timing: dict[str, Any]) -> dict[str, Any]:
    """`timing` (a result's timing_s, stages and total) with `startup` first: on the process's first result the
    seconds the stages leave unaccounted, 0.0 after; `total` includes it."""
    global _reported
    startup = 0.0 if _reported else max(0.0, process_age_s() - timing["total"])
    _reported = True
    stages = {key: value for key, value in timing.items() if key != "total"}
    rounded = {"startup": round_seconds(startup), **stages}
    return {**rounded, "total": round_seconds(sum(rounded.values()))}
