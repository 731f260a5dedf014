"""Hyperparameter search where every trial is a gang: concurrency, pruning, ranking, resume, k-fold,
and Hydra's multirun grid through the gang launcher."""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

import orchestrator
from tests.helpers import REPO, train_command, wait_until_gone

pytestmark = pytest.mark.ray

# Two good learning rates, then two that cannot learn in time: built to be pruned by the median rule.
# A prune reaches the workers at the step of the validation that decides it (test_warm_gangs), so a
# pruned trial stops within a few epochs; EPOCHS leaves room for the good trials to finish first
# (the median rule waits for pruner_startup_trials) and for the pruned ones to visibly stop early.
EPOCHS, STEPS_PER_EPOCH = 12, 22
ENQUEUED = "++search.enqueue=[{optimizer.lr:0.01},{optimizer.lr:0.003},{optimizer.lr:1e-7},{optimizer.lr:1e-7}]"
SMALL = ["model=mlp", f"trainer.max_epochs={EPOCHS}", "search.num_trials=4", "search.pruner=median",
         "search.pruner_startup_trials=2", "++search.space={optimizer.lr:{type:float,low:1e-7,high:0.1,log:true}}"]


def ledger(sweep_dir: Path):
    return json.loads((sweep_dir / "trials.json").read_text())


def overlap(a, b) -> bool:
    return a["started"] < b["ended"] and b["started"] < a["ended"]


@pytest.mark.parametrize("kind", ["random", "bayes"])
def test_search_runs_gangs_in_parallel_prunes_a_loser_and_ranks_the_trials(ray_session, tmp_path, kind):
    summary = orchestrator.run_search([f"search={kind}", *SMALL, ENQUEUED], sweep_dir=tmp_path)
    trials = ledger(tmp_path)
    assert len(trials) == 4 and summary["completed"] + summary["pruned"] == 4
    assert summary["pruned"] >= 1, "a trial that cannot learn must be pruned"
    assert any(overlap(a, b) for i, a in enumerate(trials) for b in trials[i + 1:]), \
        "the shared session holds two 2-worker gangs: trials must run side by side"
    pruned = [t for t in trials if t["status"] == "pruned"]
    assert all(t["params"]["optimizer.lr"] == 1e-7 for t in pruned)
    assert all(t["steps"] < EPOCHS * STEPS_PER_EPOCH for t in pruned), "pruned trials stop early and free their workers"
    assert summary["best"]["params"]["optimizer.lr"] in (0.01, 0.003)
    ranked = (tmp_path / "trials.csv").read_text().splitlines()
    assert ranked[0].startswith("rank,trial,status,val/accuracy,optimizer.lr") and len(ranked) == 5
    assert ",completed," in ranked[1]
    assert "Best: trial" in (tmp_path / "trials.md").read_text()


def test_search_lines_trials_up_in_the_hparams_view(ray_session, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    orchestrator.run_search(["search=grid", "++search.space={optimizer.lr:{type:choice,values:[0.01,0.003]}}",
                         "~search.space.optimizer", "model=mlp", "trainer.max_epochs=2"], sweep_dir=tmp_path)
    root = EventAccumulator(str(tmp_path))
    root.Reload()
    assert "_hparams_/experiment" in root.PluginTagToContent("hparams")
    for trial_dir in sorted(tmp_path.glob("trial_*")):
        acc = EventAccumulator(str(trial_dir / "tb"))
        acc.Reload()
        tags = acc.PluginTagToContent("hparams")
        assert "_hparams_/session_start_info" in tags and "_hparams_/experiment" not in tags


def test_kfold_reports_every_fold_with_mean_and_standard_deviation(ray_session, tmp_path):
    summary = orchestrator.run_search(["search=kfold", "search.folds=3", "model=mlp", "trainer.max_epochs=3"],
                                  sweep_dir=tmp_path)
    cv = summary["cross_validation"]
    assert cv["folds"] == 3 and len(cv["values"]) == 3
    assert cv["mean"] == pytest.approx(statistics.fmean(cv["values"]))
    assert cv["std"] == pytest.approx(statistics.stdev(cv["values"]))
    folds = sorted(t["params"]["data.cv_fold"] for t in ledger(tmp_path))
    assert folds == [0, 1, 2]
    assert "3-fold cross-validation" in (tmp_path / "trials.md").read_text()


def wait_for_ledger(sweep_dir: Path, predicate, seconds: float = 180):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if predicate(ledger(sweep_dir)):
                return
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.2)
    raise TimeoutError("the search never reached the awaited state")


def test_an_interrupted_search_resumes_without_rerunning_finished_trials(tmp_path, own_ray_env, ray_session,
                                                                         capsys):
    env, sweep = own_ray_env, tmp_path / "sweep"
    overrides = ["search=random", "search.num_trials=3", "search.max_concurrent=1", "search.pruner=none",
                 "model=mlp", "trainer.max_epochs=40", "checkpoint.every_n_steps=10"]
    proc = subprocess.Popen(train_command(sweep, *overrides), cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for_ledger(sweep, lambda ts: any(t["status"] == "completed" for t in ts) and len(ts) == 2)
    # Interrupted once the second trial has trained and checkpointed a little (a fixed sleep let it finish
    # first on a quiet machine: its 440 steps take a few seconds).
    second = REPO / next(t for t in ledger(sweep) if t["number"] == 1)["run_dir"] / "checkpoints"
    deadline = time.time() + 120
    while not any(second.glob("step-*.json")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err[-2000:]
    before = {t["number"]: t["status"] for t in ledger(sweep)}
    assert before == {0: "completed", 1: "interrupted"}
    finished_at = (sweep / "trial_000" / "summary.json").stat().st_mtime
    assert wait_until_gone(Path(env["RAY_TMPDIR"])) == []

    # The same search again, in-process on the shared Ray (the resume reads only the sweep dir; one Ray
    # start less than a second command line).
    capsys.readouterr()
    orchestrator.run_search(overrides, sweep_dir=sweep)
    assert "Resuming the search" in capsys.readouterr().out
    trials = ledger(sweep)
    assert sum(t["status"] == "completed" for t in trials) == 3
    assert (sweep / "trial_000" / "summary.json").stat().st_mtime == finished_at, "trial 0 must not run again"
    continued = [t for t in trials if t["number"] > 1 and t["params"] == trials[1]["params"]]
    assert continued, "the interrupted trial runs again with the same parameters"
    resumed_events = json.loads((Path(continued[0]["run_dir"]) / "summary.json").read_text())["events"]
    assert any(e["event"] == "resume" for e in resumed_events), "it continues from its checkpoint"


def test_hydra_multirun_grid_runs_gangs_side_by_side(tmp_path, own_ray_env):
    command = [sys.executable, "-m", "orchestrator.train", "-m", "optimizer.lr=0.01,0.003", "model=mlp",
               "trainer.max_epochs=12", "cluster.num_cpus=4", f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.run(command, cwd=REPO, env=own_ray_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = (tmp_path / "trials.csv").read_text().splitlines()
    assert len(rows) == 3 and all(",completed," in row for row in rows[1:])
    spans = []
    for job in ("0", "1"):
        summary = json.loads((tmp_path / job / "summary.json").read_text())
        assert summary["status"] == "completed"
        end = (tmp_path / job / "summary.json").stat().st_mtime
        spans.append({"started": summary["timing"]["first_step_unix"], "ended": end})
    assert overlap(*spans), "two 2-worker gangs fit in 4 CPUs: the jobs must overlap"
    # The same command on the same sweep dir (e.g. after Ctrl-C) does not run finished jobs again.
    finished_at = [(tmp_path / job / "summary.json").stat().st_mtime for job in ("0", "1")]
    again = subprocess.run(command, cwd=REPO, env=own_ray_env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already completed") == 2
    assert [(tmp_path / job / "summary.json").stat().st_mtime for job in ("0", "1")] == finished_at
