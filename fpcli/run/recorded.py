"""What `ask`, `batch` and `chat` record as the settings of a result (fpcli.recorded_settings), and batch's check that
resuming a results file keeps them.

The model's part (name, checkpoint identity, layout, dtype) is resolved once per command, without loading weights;
the rest comes from the item's RunSettings: sampling as the model will sample (`sampling_options`: frames and rate
filled in from the model's rule when not given), the method with every option, generation.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Protocol

from fpcli.errors import Fatal
from fpcli.recorded_settings import SETTING_NAMES, SETTINGS_KEY, PredictionSettings, check_same
from fpcli.run.settings import RunSettings

if TYPE_CHECKING:
    from fpcli.run.source import LazyModel


class Item(Protocol):
    """What the resume check needs of a batch item (fpcli.cli.batch.Job): its id and its settings."""

    id: str

    def settings(self, base: RunSettings) -> RunSettings: ...

BATCH_RESTART = "give a new --out to keep both, or add --force-new to start this results file over"


class Recorder:
    """The settings record of each result of one command's model (`LazyModel`)."""

    def __init__(self, model: LazyModel) -> None:
        self.model = model
        self._model_part: Optional[dict[str, Any]] = None

    def model_part(self) -> dict[str, Any]:
        """Name, checkpoint identity, layout and dtype (resolving the model, not loading it; once)."""
        if self._model_part is None:
            from fpcli.model.feature_cache import checkpoint_identity

            identity = self.model.identity()
            self._model_part = {"model": self.model.spec, "checkpoint": checkpoint_identity(identity.path),
                                "layout": identity.layout, "dtype": identity.dtype}
        return self._model_part

    def settings(self, settings: RunSettings, method: Optional[str] = None) -> dict[str, Any]:
        """The record of a result of `settings` (of `method` beside --method with --compare)."""
        from fpcli.model.method_catalogue import method_options
        from fpcli.model.sampling import sampling_options
        from fpcli.video.sampling import DEFAULT_INDEX_RULE  # the CLI's sampling names no rule

        method = method or settings.method
        sampling = sampling_options(settings.frames, settings.fps, self.model.sampling_rule)
        return PredictionSettings(
            **self.model_part(), frames=sampling["num_frames"], fps=sampling.get("fps"),
            max_pixels=settings.max_pixels, index_rule=DEFAULT_INDEX_RULE, method=method,
            method_options=method_options(method, settings.prune_options(method)), ratio=settings.ratio_of(method),
            max_new_tokens=settings.max_new_tokens, temperature=settings.temperature, seed=settings.seed,
        ).to_dict()


def check_resume(path: Path, done: list[dict[str, Any]], jobs: list[Item], base: RunSettings,
                 recorder: Recorder) -> None:
    """Exit 2 (SettingsChanged) when an item already done in the results file `path` was made with settings other
    than those it has now: its result would stand for a run it is not part of. Records without settings (an older
    file) and items whose options do not check (they fail anyway) are not compared."""
    by_id = {job.id: job for job in jobs}
    for record in done:
        job = by_id.get(str(record.get("id")))
        if job is None or record.get(SETTINGS_KEY) is None:
            continue
        try:
            settings = job.settings(base)
        except ValueError:
            continue
        where = f"{path} (item {job.id!r})"
        try:
            current = recorder.settings(settings)
        except Fatal:  # the model cannot be resolved (gone, offline): its name at least must be the one recorded
            current, ignore = {"model": recorder.model.spec}, tuple(n for n in SETTING_NAMES if n != "model")
            check_same(record[SETTINGS_KEY], current, where=where, restart=BATCH_RESTART, ignore=ignore)
            continue
        check_same(record[SETTINGS_KEY], current, where=where, restart=BATCH_RESTART)


def done_records(path: Path) -> list[dict[str, Any]]:
    """The ok records of a results file as they are on disk (before ResultsLog rewrites it)."""
    from fpcli.jsonl import read_records

    return [record for record in read_records(path)[0] if record.get("status") == "ok"]
