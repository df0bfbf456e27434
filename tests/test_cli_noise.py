"""Noise and timing: libraries' warnings hidden unless --debug, pruning on one CPU thread, --threads, and the first
result's time line counting start-up so that its total is the process's wall time."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_cli_run import QUESTION, write_clip
from typer.testing import CliRunner

from fpcli.cli import app
from fpcli.cli.noise import TRANSFORMERS_VERBOSITY
from fpcli.prune import prune
from fpcli.prune.registry import Selection, register_method
from fpcli.prune.threads import PRUNE_THREADS, prune_threads

REPO = Path(__file__).resolve().parents[1]
RAY_AUTH = "ray._private.authentication.authentication_token_setup"


@pytest.fixture
def library_loggers(monkeypatch):
    monkeypatch.delenv(TRANSFORMERS_VERBOSITY, raising=False)
    yield
    for name in ("transformers", RAY_AUTH):
        logging.getLogger(name).setLevel(logging.NOTSET)
    os.environ.pop(TRANSFORMERS_VERBOSITY, None)


@pytest.mark.parametrize(("args", "hidden"), [
    (["methods", "fastv"], True),
    (["--debug", "methods", "fastv"], False),
    (["methods", "fastv", "--debug"], False),
])
def test_library_warnings_hidden_unless_debug(library_loggers, args, hidden):
    assert CliRunner().invoke(app, args).exit_code == 0
    for name in ("transformers.tokenization_utils_base", RAY_AUTH):
        assert logging.getLogger(name).isEnabledFor(logging.WARNING) is not hidden, name
    assert (os.environ.get(TRANSFORMERS_VERBOSITY) == "error") is hidden


def test_a_users_transformers_verbosity_is_kept(library_loggers, monkeypatch):
    monkeypatch.setenv(TRANSFORMERS_VERBOSITY, "info")
    assert CliRunner().invoke(app, ["--debug", "methods", "fastv"]).exit_code == 0
    assert os.environ[TRANSFORMERS_VERBOSITY] == "info"


def test_pruning_runs_on_one_cpu_thread_and_restores_the_setting(scratch_registry):
    seen = []

    @register_method("threads-seen")
    def threads_seen(features, grid, k):
        seen.append(torch.get_num_threads())
        return Selection(torch.arange(k))

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        prune(torch.randn(2, 4, 8), (2, 2), 0.5, "threads-seen")
        assert seen == [PRUNE_THREADS]
        assert torch.get_num_threads() == 2
        with prune_threads(torch.device("meta")):  # not the CPU: untouched
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_threads_option_sets_torchs_threads():
    before = torch.get_num_threads()
    try:
        assert CliRunner().invoke(app, ["--threads", "1", "methods", "none"]).exit_code == 0
        assert torch.get_num_threads() == 1
        bad = CliRunner().invoke(app, ["--threads", "0", "methods"])
        assert bad.exit_code == 2 and "Invalid value for '--threads'" in bad.stderr
    finally:
        torch.set_num_threads(before)


def test_total_of_the_first_result_is_the_wall_time_of_the_process(tmp_path, tiny_onevision_dir):
    clip = write_clip(tmp_path / "a.mp4")
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "fpcli", "ask", str(clip), str(clip), QUESTION, "--model", str(tiny_onevision_dir),
         "--frames", "2", "--max-new-tokens", "2", "--json", "--no-cache"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    wall = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    first, second = (json.loads(line)["timing_s"] for line in done.stdout.splitlines())
    assert list(first)[0] == "startup" and first["startup"] > 0 and second["startup"] == 0
    assert first["total"] == pytest.approx(sum(v for k, v in first.items() if k != "total"), abs=1e-3)
    assert first["total"] <= wall and first["total"] > 0.5 * wall  # the interpreter and imports included
    assert "Token indices sequence length" not in done.stderr
