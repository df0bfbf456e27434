"""Model fixtures: tiny random checkpoints in the real on-disk format, built once per test session."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_onevision_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LLaVA-OneVision checkpoint directory (onevision layout, no forestprune.json)."""
    from fpcli.devtools.tiny_checkpoint import build_tiny_checkpoint  # imported here: torch/transformers only when used

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-onevision"), layout="onevision")


@pytest.fixture(scope="session")
def tiny_video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LLaVA-Video checkpoint directory (forestprune.json says layout "video")."""
    from fpcli.devtools.tiny_checkpoint import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-video"), layout="video")
