"""Progress bars and messages, always on stderr so stdout carries only results.

Bars show only when stderr is a terminal and --quiet is off; messages (which model loads,
where results go) show unless --quiet. Errors are printed by fpcli.cli.errors regardless.
Stages count frames or items, except the download and conversion of a checkpoint, which count
bytes (shown as sizes and a transfer rate): `forestprune convert`, or a first use of llava-video-7b.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

ProgressFn = Callable[[str, int, int], None]

# Stage names the video and model layers report, as shown on the bar.
LABELS = {
    "decode": "Decoding frames",
    "encode": "Encoding frames",
    "load": "Loading model",
    "download": "Downloading",
    "convert": "Converting",
}
BYTE_STAGES = {"download", "convert"}


class _Amount(ProgressColumn):
    """done/total of a task: a count (with items/s for the command's own bars), or for a byte-sized stage the sizes
    and the transfer rate."""

    def __init__(self) -> None:
        super().__init__()
        self.count, self.size, self.rate = MofNCompleteColumn(), DownloadColumn(), TransferSpeedColumn()

    def render(self, task: Task) -> Text:
        if task.fields.get("in_bytes"):
            return Text.assemble(self.size.render(task), " ", self.rate.render(task))
        if task.fields.get("items") and task.speed:
            return Text.assemble(self.count.render(task), f" {task.speed:.2f} items/s")
        return self.count.render(task)


class Reporter:
    """Owns the stderr console: `message()` for lines, `callback` for the layers' progress(stage, done, total)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.bars: Optional[Progress] = None
        if not quiet and sys.stderr.isatty():
            self.bars = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                _Amount(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
        self._stages: dict[str, TaskID] = {}

    def __enter__(self) -> Reporter:
        if self.bars is not None:
            self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bars is not None:
            self.bars.stop()

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, markup=False)

    @property
    def callback(self) -> Optional[ProgressFn]:
        """What to pass as `progress=` to sample_frames, load_model, encode, answer (None when bars are off)."""
        return self._stage if self.bars is not None else None

    def _stage(self, stage: str, done: int, total: int) -> None:
        assert self.bars is not None
        task = self._stages.get(stage)
        if task is None:
            task = self.bars.add_task(LABELS.get(stage, stage.capitalize()), total=total,
                                      in_bytes=stage in BYTE_STAGES)
            self._stages[stage] = task
        self.bars.update(task, completed=done, total=total)
        if done >= total:  # a finished stage leaves the screen; the next video starts a new bar
            self.bars.remove_task(task)
            del self._stages[stage]

    def task(self, description: str, total: int) -> Optional[TaskID]:
        """A bar the command advances itself (batch items, videos); None when bars are off."""
        return self.bars.add_task(description, total=total, items=True) if self.bars is not None else None

    def advance(self, task: Optional[TaskID], description: Optional[str] = None) -> None:
        """One step of `task`; `description` replaces its label (a running score)."""
        if self.bars is not None and task is not None:
            self.bars.advance(task)
            if description is not None:
                self.bars.update(task, description=description)
