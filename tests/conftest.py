"""Shared pytest setup: hypothesis profiles and the fixture modules of each layer."""

import importlib.util
import os
from typing import Iterator

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["fixtures_video", "fixtures_model", "fixtures_eval", "fixtures_qwen", "fixtures_ray"]

# CI machines have 2 slow cores shared with torch: no per-example deadline, and a
# smaller example budget than hypothesis' default so the suite stays at a few minutes.
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _own_feature_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own empty $FORESTPRUNE_CACHE: no test reads what another (or the user) stored."""
    monkeypatch.setenv("FORESTPRUNE_CACHE", str(tmp_path_factory.mktemp("forestprune-cache")))
    for name in ("FORESTPRUNE_NO_CACHE", "FORESTPRUNE_CACHE_MAX_SIZE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True, scope="session")
def _cpu_dtype_pinned() -> Iterator[None]:
    """`--dtype auto` is float32 on every test machine's CPU, with or without native bfloat16 (fpcli.model.cpu_dtype):
    the tests' exact references must not depend on the CPU that runs them. Session-wide, so that the models that
    module- and session-scoped fixtures load are pinned too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FORESTPRUNE_CPU_DTYPE", "float32")
        yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `ray` need Ray, an optional extra: skipped (not failed) where it is not installed."""
    if importlib.util.find_spec("ray") is not None:
        return
    skip = pytest.mark.skip(reason='Ray is not installed (pip install "forestprune[ray]")')
    for item in items:
        if item.get_closest_marker("ray") is not None:
            item.add_marker(skip)


@pytest.fixture
def scratch_registry(monkeypatch):
    """Pruning methods registered inside a test disappear after it."""
    from fpcli.prune import registry

    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """The lmms-eval tests need lmms-eval's own venv: say that this run left them out, and who runs them."""
    if "not lmms_eval" in (config.option.markexpr or ""):
        terminalreporter.write_line("lmms_eval tests deselected here: .ci/lmms-eval runs them in lmms-eval's venv")
