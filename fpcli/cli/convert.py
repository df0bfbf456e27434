"""`forestprune convert SOURCE OUT_DIR`: make an original LLaVA-NeXT checkpoint loadable through transformers.

Progress bars in bytes (download, conversion) and messages go to stderr; the one-line result goes to stdout.
The conversion itself is fpcli.model.llava.convert; its errors are ModelErrors, reported by fpcli.cli.errors.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from fpcli.cli.options import Debug, Quiet
from fpcli.cli.progress import Reporter


def convert(
    source: Annotated[str, typer.Argument(
        metavar="SOURCE", show_default=False,
        help="Hugging Face id (lmms-lab/LLaVA-Video-7B-Qwen2) or local directory of an original LLaVA-NeXT "
             "checkpoint (LlavaQwenForCausalLM).")],
    out_dir: Annotated[Path, typer.Argument(
        metavar="OUT_DIR", show_default=False,
        help="Where to write the transformers checkpoint; must be empty or new unless --force.")],
    force: Annotated[bool, typer.Option(
        "--force", "-f", help="Replace a non-empty OUT_DIR (only once the new checkpoint is complete).")] = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Convert an original LLaVA-Video checkpoint into a LLaVA-OneVision one for `--model OUT_DIR`.

    Streams the weights tensor by tensor, checks that every tensor is used once and every parameter filled, and
    records the "video" layout in OUT_DIR/forestprune.json so `ask`, `stats` and `batch` pick it automatically.
    """
    from fpcli.model.llava.convert import MARKER, convert_checkpoint, human_size

    start = time.perf_counter()
    with Reporter(quiet) as reporter:
        out = convert_checkpoint(source, out_dir, force=force, progress=reporter.callback, notify=reporter.message)
    marker = json.loads((out / MARKER).read_text())
    seconds = time.perf_counter() - start
    dropped = len(marker["dropped"])
    print(f"Converted {marker['source']} -> {out}: {marker['tensors']} tensors, {human_size(marker['total_size'])}"
          f"{f', {dropped} unused dropped' if dropped else ''}, layout video, {seconds:.1f} s")
    reporter.message(f"Use it with: forestprune ask VIDEO QUESTION --model {out}")
