"""A start-up phase that outlasts its bound fails in bounded time, naming the key, and leaves nothing
reserved (local Ray). The bounds are 0.1 ms, which Ray waits as 0 ms: no healthy start can meet them."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import ray

import orchestrator
from orchestrator.driver.worker_group import RendezvousTimeout, WorkerStartTimeout
from tests.helpers import REPO, train_command, wait_until_gone

pytestmark = pytest.mark.ray

TINY = ["model=mlp", "trainer.max_epochs=1"]


def reserved_groups():
    return [pg for pg in ray.util.placement_group_table().values() if pg["state"] != "REMOVED"]


@pytest.mark.parametrize("override,error,phrase", [
    ("scaling.actor_start_timeout_s=0.0001", WorkerStartTimeout, "workers did not start within 0.0001s"),
    ("scaling.rendezvous_timeout_s=0.0001", RendezvousTimeout, "did not join the process group"),
])
def test_a_phase_past_its_bound_fails_at_once_and_names_the_key(ray_session, tmp_path, override, error, phrase):
    before = len(reserved_groups())
    start = time.monotonic()
    with pytest.raises(error) as err:
        orchestrator.run([*TINY, override], run_dir=tmp_path, show_progress=False)
    assert time.monotonic() - start < 60  # no 120 s default, no hang
    message = str(err.value)
    assert phrase in message and f"raise {override.split('=')[0]} to wait longer" in message
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and error.__name__ in summary["error"]
    assert len(reserved_groups()) == before  # the gang's placement group was released


def test_the_command_line_prints_the_bound_and_its_key_without_a_traceback(own_ray_env, tmp_path):
    proc = subprocess.run(train_command(tmp_path / "run", *TINY, "scaling.actor_start_timeout_s=0.0001"),
                          cwd=REPO, env=own_ray_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "Run failed: 2 of 2 workers did not start within 0.0001s" in proc.stderr
    assert "scaling.actor_start_timeout_s" in proc.stderr and "Traceback" not in proc.stderr
    assert wait_until_gone(Path(own_ray_env["RAY_TMPDIR"])) == []
