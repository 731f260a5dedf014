"""The command line end to end: its own embedded Ray, started and stopped by the run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO, train_command, wait_until_gone

pytestmark = pytest.mark.ray


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
