"""Qwen-VL fixtures: tiny random Qwen2.5-VL and Qwen3-VL checkpoints in the real on-disk format, once per session."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_qwen25_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2.5-VL checkpoint directory (model_type qwen2_5_vl)."""
    from fpcli.devtools.tiny_qwen import build_tiny_qwen  # imported here: torch/transformers only when used

    return build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen25"), arch="qwen2_5_vl")


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen3-VL checkpoint directory (model_type qwen3_vl)."""
    from fpcli.devtools.tiny_qwen import build_tiny_qwen

    return build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen3"), arch="qwen3_vl")
