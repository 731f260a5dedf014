"""Shared fixtures: one local Ray session for the whole suite, run dirs, a Ray temp dir per command-line run.
Helpers the tests import live in tests/helpers.py: importing this file from a test would run it twice."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.helpers import RAY_TMP  # first: sets RAY_TMPDIR before anything imports ray

# Logical CPUs of the shared session: more than the 2 cores, so that tests can run two gangs at once.
SHARED_CPUS = 4


def pytest_collection_modifyitems(config, items):
    # Tests that need their own Ray cluster run last, after the shared session is no longer needed.
    items.sort(key=lambda item: 1 if item.get_closest_marker("multinode") else 0)


def pytest_sessionfinish(session, exitstatus):
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    finally:
        shutil.rmtree(RAY_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_session():
    """The suite's shared local Ray (the launcher reuses a session that is already up)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=SHARED_CPUS, include_dashboard=False, logging_level="warning", log_to_driver=False)
    yield ray


@pytest.fixture(scope="session")
def checkpoint_reference(ray_session, tmp_path_factory) -> Path:
    """One uninterrupted run of test_checkpoint_direct.RUN, synchronous and with the bytes through the
    driver (the fallback path): the reference that resumed runs in two test files must end bit-equal to."""
    import orchestrator
    from tests.test_checkpoint_direct import RUN

    run_dir = tmp_path_factory.mktemp("checkpoint_reference")
    orchestrator.run(RUN + ["checkpoint.transport=driver", "checkpoint.async_save=false"], run_dir=run_dir,
                     show_progress=False)
    return run_dir


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return tmp_path / "run"


@pytest.fixture
def own_ray_env():
    """A Ray temp dir of the run's own (short: unix socket paths are limited to 107 bytes)."""
    ray_tmp = tempfile.mkdtemp(prefix="rc", dir="/tmp")
    env = dict(os.environ, RAY_TMPDIR=ray_tmp)
    env.pop("RAY_ADDRESS", None)
    yield env
    shutil.rmtree(ray_tmp, ignore_errors=True)
