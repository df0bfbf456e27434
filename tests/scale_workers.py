"""Trivial picklable handlers for the fpcli.scale tests (imported by the Ray workers, so a module of its own)."""

import os
import time

from fpcli.run.on_ray import EvalHandler
from fpcli.scale import WorkerFatal


class Echo:
    """Answers each item {"id", "key", "pid"} after its `sleep` seconds; an item with `fail` raises ValueError, one
    with `fatal` raises WorkerFatal, one with `exit` ends the worker process. Every attempt at an item is appended to the file `attempts` first."""

    def __init__(self, attempts: str) -> None:
        self.attempts = attempts

    def __call__(self, key, items):
        for item in items:
            with open(self.attempts, "a") as log:
                log.write(item["id"] + "\n")
            time.sleep(item.get("sleep", 0.0))
            if item.get("fail"):
                raise ValueError(f"bad item {item['id']}")
            if item.get("exit"):
                os._exit(1)  # the worker process dies (as by the OOM killer) at this item, every time
            if item.get("fatal"):
                raise WorkerFatal("the model cannot load", hint="check the model")
            yield {"id": item["id"], "key": key, "pid": os.getpid()}


class KilledOnceEval(EvalHandler):
    """eval's handler whose worker process dies after its first record, once per run directory's data (the file
    `killed` next to the videos' folder says it happened: created atomically, so only one worker dies)."""

    def __call__(self, video, items):
        for count, out in enumerate(super().__call__(video, items)):
            if count == 1:
                try:
                    os.close(os.open(items[0].video.parent.parent / "killed", os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    pass
                else:
                    os._exit(1)
            yield out
