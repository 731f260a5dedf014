"""Ctrl-C on the driver: a final checkpoint, nothing left running, and an exact resume."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

import orchestrator
from tests.helpers import REPO, read_scalars, train_command, wait_until_gone

pytestmark = pytest.mark.ray

# The CNN has dropout and batch norm: an exact resume needs the RNG streams, BN buffers,
# optimizer moments, LR schedule and the data position mid-epoch all restored.
RUN = ["model=cnn", "model.channels=[16,32]", "trainer.max_steps=200", "trainer.max_epochs=100", "trainer.log_every_n_steps=2",
       "checkpoint.every_n_steps=10", "checkpoint.every_epoch=false", "checkpoint.keep_last=50"]


def final_state(run_dir: Path):
    latest = sorted((run_dir / "checkpoints").glob("step-*.pt"))[-1]
    return torch.load(io.BytesIO(latest.read_bytes()), weights_only=True)


def wait_for(path_glob, root: Path, seconds: float = 120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if list(root.glob(path_glob)):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing matched {root}/{path_glob} within {seconds}s")


def test_sigint_checkpoints_cleans_up_and_resume_is_bit_exact(tmp_path, own_ray_env, ray_session):
    env = own_ray_env
    interrupted = tmp_path / "interrupted"
    proc = subprocess.Popen(train_command(interrupted, *RUN), cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for("checkpoints/step-*.json", interrupted)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "SIGINT" in out
    stopped_at = final_state(interrupted)["train_state"]["step"]
    assert 10 <= stopped_at < 200, "the final checkpoint is written where the run stopped"
    assert wait_until_gone(Path(env["RAY_TMPDIR"])) == [], "no Ray or worker process may survive"

    # The resume and the reference run in-process on the suite's shared Ray: the same training as from the
    # command line (test_checkpoint_direct compares the two paths bit for bit), without two more Ray starts.
    resumed = orchestrator.run([*RUN, "trainer.resume=auto"], run_dir=interrupted, show_progress=False)
    assert resumed.status == "completed"
    assert any(e["event"] == "resume" for e in resumed.summary["events"]), "it continued from the final checkpoint"
    uninterrupted = tmp_path / "uninterrupted"
    assert orchestrator.run(RUN, run_dir=uninterrupted, show_progress=False).status == "completed"

    a, b = final_state(interrupted), final_state(uninterrupted)
    assert a["train_state"]["step"] == b["train_state"]["step"] == 200
    for key in b["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), f"{key} differs after resume"
    for state_a, state_b in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for name in state_b:
            assert torch.equal(state_a[name], state_b[name]), f"optimizer {name} differs after resume"

    steps = [step for step, _ in read_scalars(interrupted / "tb")["train/loss"]]
    assert steps == sorted(set(steps)), "the resumed curve has duplicate or rewound points"
    assert steps[-1] == 200


def test_sigterm_stops_like_ctrl_c(tmp_path, own_ray_env):
    """What a scheduler sends before preempting a job (after Ray has installed its own handler)."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(train_command(run_dir, *RUN), cwd=REPO, env=own_ray_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for("checkpoints/step-*.json", run_dir)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "SIGTERM" in summary["stop_reason"]
    assert final_state(run_dir)["train_state"]["step"] == summary["steps"] < 200
    assert wait_until_gone(Path(own_ray_env["RAY_TMPDIR"])) == []
