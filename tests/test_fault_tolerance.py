"""Surviving failures on a local Ray: killed workers, hangs, repeated bugs, damaged checkpoints.

Failures are real: a worker process is SIGKILLed, a rank stalls before its
all-reduce (config group ``chaos``), a rank raises. Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import time

import psutil
import pytest

import orchestrator
from orchestrator.driver.launcher import RunFailed
from tests.helpers import read_scalars

pytestmark = pytest.mark.ray

MLP_RUN = ["model=mlp", "trainer.max_epochs=100", "trainer.log_every_n_steps=5", "checkpoint.every_n_steps=10",
           "checkpoint.every_epoch=false", "failure.restart_wait_s=5"]


def worker_processes(started_after: float):
    """This run's worker actors (other runs on the machine may still be winding down)."""
    return [p for p in psutil.process_iter(["pid", "cmdline", "create_time"])
            if (p.info["cmdline"] or [""])[0].startswith("ray::Worker") and p.info["create_time"] >= started_after]


def assert_continuous(tb_dir, last_step: int, every: int, summary=None):
    """``summary``: the run's, shown when the check fails (which failure, resumed where, what events)."""
    steps = [step for step, _ in read_scalars(tb_dir)["train/loss"]]
    context = "" if summary is None else f"; restarts {summary.get('restarts')}; events {summary.get('events')}"
    assert steps == sorted(set(steps)), "duplicate or rewound points" + context
    missing = sorted(set(range(every, last_step + 1, every)) - set(steps))
    assert not missing, f"a gap in the curve: no point at {missing}{context}"


def test_a_killed_worker_is_replaced_and_the_run_completes(ray_session, tmp_path):
    steps = 400
    kill_at = random.randint(30, 100)  # the driver sees steps ~1 s late: the kill lands well before the end
    killed = {}
    started = time.time() - 1.0  # process start times have a coarse clock

    def kill_a_worker(step, values):
        if not killed and step >= kill_at:
            victim = random.choice(worker_processes(started_after=started))
            os.kill(victim.pid, signal.SIGKILL)
            killed.update(pid=victim.pid, step=step)

    result = orchestrator.run(MLP_RUN + [f"trainer.max_steps={steps}"], run_dir=tmp_path, show_progress=False,
                              on_metrics=kill_a_worker)
    assert killed, "the worker was never killed"
    assert result.status == "completed"
    assert result.summary["steps"] == steps
    (restart,) = result.summary["restarts"]
    assert restart["kind"] == "worker_died" and restart["action"] == "restart"
    # The failure is placed where the gang got (the survivors' step), not at the dead rank's last heartbeat,
    # so the work lost is counted from the checkpoint the run resumed from.
    assert restart["step"] >= restart["resume_step"] and restart["step"] >= killed["step"]
    assert restart["steps_lost"] <= 10 + 5  # at most the work since the last checkpoint (+ one log window)
    assert restart["recovery_s"] > 0
    assert_continuous(tmp_path / "tb", steps, 5, result.summary)
    scalars = read_scalars(tmp_path / "tb")
    assert scalars["fault/failures"][-1][1] == 1.0
    assert scalars["fault/recovery_s"][0][1] == pytest.approx(restart["recovery_s"])


def test_a_stalled_rank_is_detected_named_and_restarted(ray_session, tmp_path):
    hang_timeout = 4.0
    last_metrics_at = {}
    result = orchestrator.run(
        MLP_RUN + ["trainer.max_steps=60", "trainer.log_every_n_steps=1", "chaos.kind=stall", "chaos.rank=1",
                   "chaos.at_step=25", f"failure.hang_timeout_s={hang_timeout}"],
        run_dir=tmp_path, show_progress=False,
        on_metrics=lambda step, values: last_metrics_at.setdefault(step, time.time()))
    assert result.status == "completed" and result.summary["steps"] == 60
    (restart,) = result.summary["restarts"]
    assert restart["kind"] == "hang"
    stalled_since = last_metrics_at[24]
    assert restart["detected_unix"] - stalled_since < hang_timeout + 5
    report = next(e["message"] for e in result.summary["events"] if e["event"] == "failure")
    assert "rank 1" in report and "rank 0" in report
    assert "before_step" in report, "rank 1's stack must show where it stalled"
    assert "backward" in report, "rank 0's stack must show it waiting in the all-reduce"


def test_a_repeated_exception_fails_fast_with_its_traceback(ray_session, tmp_path):
    start = time.monotonic()
    with pytest.raises(RunFailed) as err:
        orchestrator.run(MLP_RUN + ["trainer.max_steps=100", "chaos.kind=raise", "chaos.once=false",
                                    "chaos.at_step=15", "failure.max_failures=5"],
                         run_dir=tmp_path, show_progress=False)
    message = str(err.value)
    assert "InjectedFailure" in message
    assert "Traceback from rank 0" in message and "chaos.py" in message and "before_step" in message
    assert "same exception" in message
    restarts = err.value.summary["restarts"]
    assert [r["action"] for r in restarts] == ["restart", "raise"], "not the whole restart budget"
    assert time.monotonic() - start < 120


def damage(latest, how: str) -> None:
    if how == "truncated":  # by a crash: the checksum no longer matches
        latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    else:  # "unloadable": a file its manifest vouches for that torch.load refuses (every rank would fail alike)
        bad = b"PK\x03\x04 not a torch checkpoint" * 100
        latest.write_bytes(bad)
        manifest_path = latest.with_suffix(".json")
        manifest = json.loads(manifest_path.read_text())
        manifest.update(bytes=len(bad), sha256=hashlib.sha256(bad).hexdigest())
        manifest_path.write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def forty_steps(ray_session, tmp_path_factory):
    """One finished 40-step run; each case below damages a copy of it."""
    run_dir = tmp_path_factory.mktemp("forty_steps")
    first = orchestrator.run(MLP_RUN + ["trainer.max_steps=40", "checkpoint.keep_last=5"], run_dir=run_dir,
                             show_progress=False)
    return run_dir, first.summary


@pytest.mark.parametrize("how", ["truncated", "unloadable"])
def test_a_damaged_latest_checkpoint_is_reported_and_the_previous_one_used(forty_steps, tmp_path, how):
    pristine, first = forty_steps
    assert first["checkpoints"]["latest_step"] == 40
    shutil.copytree(pristine, tmp_path, dirs_exist_ok=True)
    damage(tmp_path / "checkpoints" / "step-000000040.pt", how)

    resumed = orchestrator.run(MLP_RUN + ["trainer.max_steps=60", "checkpoint.keep_last=5", "trainer.resume=auto"],
                               run_dir=tmp_path, show_progress=False)
    events = {e["event"]: e for e in resumed.summary["events"]}
    assert "damaged" in events["checkpoint"]["message"] and "step 40" in events["checkpoint"]["message"]
    assert events["resume"]["step"] == 30
    assert resumed.summary["steps"] == 60
    assert_continuous(tmp_path / "tb", 60, 5)


TINY_ON = ["model=custom", "model._target_=tests.user_project.components.TinyNet", "+model.depth=1", "data=custom",
           "trainer.max_steps=6", "trainer.log_every_n_steps=2", "failure.max_failures=0"]


def test_a_data_fetch_longer_than_the_hang_timeout_is_not_a_hang(ray_session, tmp_path):
    # Before phase keepalives, every phase without step progress (data, model, restore, first step,
    # checkpoint) longer than hang_timeout_s was reported as a hang.
    result = orchestrator.run(TINY_ON + ["data._target_=tests.user_project.components.slow_blobs",
                                         "+data.delay_s=7", "failure.hang_timeout_s=3"],
                              run_dir=tmp_path, show_progress=False)
    assert result.status == "completed" and result.summary["steps"] == 6
    assert result.summary["restarts"] == []


def test_a_phase_stuck_past_its_own_bound_is_a_hang_that_names_the_phase(ray_session, tmp_path):
    start = time.monotonic()
    with pytest.raises(RunFailed) as err:
        orchestrator.run(TINY_ON + ["data._target_=tests.user_project.components.stuck_blobs",
                                    "failure.hang_timeout_s=2", "failure.phase_timeout_s=3"],
                         run_dir=tmp_path, show_progress=False)
    (restart,) = err.value.summary["restarts"]
    assert restart["kind"] == "hang"
    assert "in phase 'build'" in restart["message"] and "failure.phase_timeout_s" in restart["message"]
    report = next(e["message"] for e in err.value.summary["events"] if e["event"] == "failure")
    assert "stuck_blobs" in report, "the stack shows where the phase is stuck"
    assert time.monotonic() - start < 90
