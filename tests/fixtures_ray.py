"""Ray fixtures: one local Ray instance (2 CPUs) per test module, started on first use and shut down after it.

Tests marked `ray` are skipped where Ray is not installed (see conftest.py). The workers Ray starts inherit this
process's environment, so PYTHONPATH gets the tests folder: the test handlers (scale_workers.py) import there.
"""

import logging
import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


@pytest.fixture(scope="module")
def local_ray():
    import ray

    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), str(REPO), before]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before
