"""forestprune as an lmms-eval model: `python -m lmms_eval --model forestprune --model_args ...`.

lmms-eval (0.7.3 and later) loads external models through the entry-point group `lmms_eval.models`; the
`forestprune` entry point in pyproject.toml names `manifest` below, which tells lmms-eval's ModelRegistryV2 the
class to import (fpcli.lmms.model.Forestprune). `--model_args` are checked by fpcli.lmms.args with the CLI's own
declarations. Nothing in fpcli imports this package: it needs lmms-eval, which only the `lmms-eval` extra installs.
"""

from __future__ import annotations

MODEL_ID = "forestprune"
MODEL_CLASS = "fpcli.lmms.model.Forestprune"


def manifest():
    """The entry point's payload: lmms-eval calls it and registers what it returns."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=MODEL_CLASS)
