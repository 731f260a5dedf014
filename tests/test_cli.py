"""The command line end to end: its own embedded Ray, started and stopped by the run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.ray


def processes_using(ray_tmp: Path):
    """Processes started for a run: they carry its Ray temp dir in their command line or environment."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if str(ray_tmp) in " ".join(proc.info["cmdline"] or []) or \
                    proc.environ().get("RAY_TMPDIR") == str(ray_tmp):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def wait_until_gone(ray_tmp: Path, seconds: float = 15.0):
    deadline = time.time() + seconds
    while time.time() < deadline and processes_using(ray_tmp):
        time.sleep(0.5)
    return processes_using(ray_tmp)


def train_command(run_dir: Path, *overrides: str):
    return [sys.executable, "-m", "orchestrator.train", f"hydra.run.dir={run_dir}", *overrides]


@pytest.fixture
def own_ray_env():
    """A Ray temp dir of the run's own (short: unix socket paths are limited to 107 bytes)."""
    ray_tmp = tempfile.mkdtemp(prefix="rc", dir="/tmp")
    env = dict(os.environ, RAY_TMPDIR=ray_tmp)
    env.pop("RAY_ADDRESS", None)
    yield env
    shutil.rmtree(ray_tmp, ignore_errors=True)


def test_command_line_run_completes_and_leaves_no_process(tmp_path, own_ray_env):
    env = own_ray_env
    run_dir = tmp_path / "run"
    proc = subprocess.run(train_command(run_dir, "model=mlp", "trainer.max_epochs=2"), cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"tensorboard --logdir {run_dir / 'tb'}" in proc.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert (run_dir / ".hydra" / "config.yaml").exists()  # Hydra's resolved config in the run dir
    assert wait_until_gone(Path(env["RAY_TMPDIR"])) == []


def test_command_line_failure_exits_nonzero_and_still_shuts_ray_down(tmp_path, own_ray_env):
    env = own_ray_env
    run_dir = tmp_path / "run"
    proc = subprocess.run(train_command(run_dir, "trainer.num_workers=16", "cluster.placement_timeout_s=2"),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "cannot hold the gang" in proc.stderr and "16 workers" in proc.stderr
    assert wait_until_gone(Path(env["RAY_TMPDIR"])) == []
