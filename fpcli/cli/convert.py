"""`forestprune convert SOURCE OUT_DIR`: make an original LLaVA-NeXT checkpoint loadable through transformers.

Byte-sized progress bars (download, conversion) and messages go to stderr; the one-line result goes to stdout.
The conversion itself is fpcli.model.convert; its errors are ModelErrors, reported by fpcli.cli.errors.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from fpcli.cli.options import Debug, Quiet

_LABELS = {"download": "Downloading", "convert": "Converting"}


class _ByteBars:
    """Rich bars in bytes for the stages of a conversion, shown when stderr is a terminal and not --quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.console = Console(stderr=True, highlight=False)
        self.bars: Optional[Progress] = None
        if not quiet and sys.stderr.isatty():
            self.bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), console=self.console, transient=True)
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> _ByteBars:
        if self.bars is not None:
            self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bars is not None:
            self.bars.stop()

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, markup=False)

    def update(self, stage: str, done: int, total: int) -> None:
        if self.bars is None:
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.bars.add_task(_LABELS.get(stage, stage.capitalize()), total=total)
        self.bars.update(self.tasks[stage], completed=done, total=total)


def convert(
    source: Annotated[str, typer.Argument(
        help="Hugging Face id (lmms-lab/LLaVA-Video-7B-Qwen2) or local directory of an original LLaVA-NeXT "
             "checkpoint (LlavaQwenForCausalLM).", show_default=False)],
    out_dir: Annotated[Path, typer.Argument(
        help="Where to write the transformers checkpoint; must be empty or new unless --force.", show_default=False)],
    force: Annotated[bool, typer.Option(
        "--force", "-f", help="Replace a non-empty OUT_DIR (only once the new checkpoint is complete).")] = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Convert an original LLaVA-Video checkpoint into a LLaVA-OneVision one for `--model OUT_DIR`.

    Streams the weights tensor by tensor, checks that every tensor is used once and every parameter filled, and
    records the "video" layout in OUT_DIR/forestprune.json so `ask`, `stats` and `batch` pick it automatically.
    """
    from fpcli.model.convert import MARKER, convert_checkpoint, human_size

    start = time.perf_counter()
    with _ByteBars(quiet) as bars:
        out = convert_checkpoint(source, out_dir, force=force, progress=bars.update, notify=bars.message)
    marker = json.loads((out / MARKER).read_text())
    seconds = time.perf_counter() - start
    dropped = len(marker["dropped"])
    print(f"Converted {marker['source']} -> {out}: {marker['tensors']} tensors, {human_size(marker['total_size'])}"
          f"{f', {dropped} unused dropped' if dropped else ''}, layout video, {seconds:.1f} s")
    bars.message(f"Use it with: forestprune ask VIDEO QUESTION --model {out}")
