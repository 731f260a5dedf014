"""Gangs that outlive failures, on the shared local Ray: a lost rank is healed from a live peer's
memory (failure.recovery=peer, the default), a spare takes its place, a preemption notice (SIGTERM)
leads to a checkpoint before the worker goes, and with no survivor the run restarts from disk.

Failures are real: the worker process SIGKILLs or SIGTERMs itself at a chosen step (``chaos``)."""

from __future__ import annotations

import pytest
import torch

import orchestrator
from tests.helpers import read_scalars

pytestmark = pytest.mark.ray

# Dropout on: each step's random streams come from (seed, rank, step), so even a model that draws
# random numbers is healed bit for bit.
RUN = ["model=mlp", "model.dropout=0.2", "trainer.max_steps=30", "trainer.max_epochs=100",
       "trainer.log_every_n_steps=1", "checkpoint.every_epoch=false", "health.layer_stats_every_n_steps=0"]


def final_weights(run_dir):
    (last,) = sorted((run_dir / "checkpoints").glob("step-*.pt"))[-1:]
    return last.name, torch.load(last, weights_only=True)["model"]


def assert_same_weights(a, b):
    (name_a, wa), (name_b, wb) = final_weights(a), final_weights(b)
    assert name_a == name_b
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "not bit-exact"


def assert_continuous_curve(tb_dir, last_step):
    steps = [step for step, _ in read_scalars(tb_dir)["train/loss"]]
    assert steps == sorted(set(steps)), "duplicate or rewound points"
    assert set(range(1, last_step + 1)) <= set(steps), "a gap in the curve"


@pytest.fixture(scope="module")
def uninterrupted(ray_session, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("whole")
    orchestrator.run(RUN, run_dir=run_dir, show_progress=False)
    return run_dir


def test_a_killed_worker_is_healed_from_a_peer_and_ends_with_the_same_weights(uninterrupted, tmp_path):
    result = orchestrator.run(RUN + ["chaos.kind=exit", "chaos.rank=1", "chaos.at_step=17"], run_dir=tmp_path,
                              show_progress=False)
    assert result.status == "completed" and result.summary["steps"] == 30
    (restart,) = result.summary["restarts"]
    assert restart["path"] == "peer" and restart["kind"] == "worker_died" and restart["replaced"] == [1]
    assert restart["source_rank"] == 0 and restart["resume_step"] == 16 and restart["steps_lost"] == 1
    assert restart["recovery_s"] > 0
    assert_same_weights(uninterrupted, tmp_path)
    assert_continuous_curve(tmp_path / "tb", 30)  # the rows not yet reduced at the failure were kept
    assert read_scalars(tmp_path / "tb")["fault/peer_recovery"][-1][1] == 1.0


def test_a_killed_rank_0_is_healed_and_the_curve_keeps_what_it_had_not_sent(uninterrupted, tmp_path):
    """Rank 0 reports; the rows it had reduced but not yet sent die with it (it sends about every 0.5 s).
    Every rank holds the same reduced rows, so the healed gang's rank 0 sends them again."""
    result = orchestrator.run(RUN + ["chaos.kind=exit", "chaos.rank=0", "chaos.at_step=17"], run_dir=tmp_path,
                              show_progress=False)
    assert result.status == "completed" and result.summary["steps"] == 30
    (restart,) = result.summary["restarts"]
    assert restart["path"] == "peer" and restart["replaced"] == [0] and restart["source_rank"] == 1
    assert_same_weights(uninterrupted, tmp_path)
    assert_continuous_curve(tmp_path / "tb", 30)


def test_with_every_worker_dead_the_run_restarts_from_the_checkpoint_and_says_so(uninterrupted, tmp_path):
    # A synchronous save: the step-10 checkpoint is surely stored before both processes die at step 17.
    result = orchestrator.run(RUN + ["checkpoint.every_n_steps=10", "checkpoint.async_save=false", "chaos.kind=exit",
                                     "chaos.rank=-1", "chaos.at_step=17"], run_dir=tmp_path, show_progress=False)
    assert result.status == "completed" and result.summary["steps"] == 30
    (restart,) = result.summary["restarts"]
    assert restart["path"] == "disk" and restart["resume_step"] == 10
    assert restart["not_healed"] == "no rank survived with its state"
    failure = next(e for e in result.summary["events"] if e["event"] == "failure")
    assert "no peer recovery: no rank survived" in failure["message"]
    assert_same_weights(uninterrupted, tmp_path)


def test_a_spare_takes_the_place_of_a_killed_worker_and_is_replaced_in_turn(uninterrupted, tmp_path):
    # Attempt k kills rank 1 at step 12 + 10k: two kills, each filled by a spare.
    result = orchestrator.run(RUN + ["trainer.spare_workers=1", "scaling.cpus_per_worker=0.5", "chaos.kind=exit",
                                     "chaos.rank=1", "chaos.at_step=12", "chaos.every_n_steps=10",
                                     "failure.max_failures=2"], run_dir=tmp_path, show_progress=False)
    assert result.status == "completed" and result.summary["steps"] == 30
    restarts = result.summary["restarts"]
    assert [r["path"] for r in restarts] == ["peer", "peer"]
    assert [r["replaced_by"] for r in restarts] == [{"1": "spare"}, {"1": "spare"}], "the spare was not refilled"
    assert result.summary["spare_workers"] == 1
    assert_same_weights(uninterrupted, tmp_path)


@pytest.mark.parametrize("recovery", ["peer", "disk"])
def test_a_preemption_notice_leads_to_a_checkpoint_before_the_worker_goes(tmp_path, ray_session, recovery):
    result = orchestrator.run(RUN + ["chaos.kind=term", "chaos.rank=1", "chaos.at_step=8",
                                     f"failure.recovery={recovery}"], run_dir=tmp_path, show_progress=False)
    assert result.status == "completed" and result.summary["steps"] == 30
    (restart,) = result.summary["restarts"]
    assert restart["kind"] == "preempted" and restart["rank"] == 1 and restart["path"] == recovery
    noticed = next(e for e in result.summary["events"] if e["event"] == "preemption")
    saved = sorted(int(p.stem.split("-")[1]) for p in (tmp_path / "checkpoints").glob("step-*.json"))
    assert noticed["step"] in saved and noticed["step"] >= 8, "no checkpoint at the notice"
    assert restart["resume_step"] == noticed["step"] or recovery == "peer"
    assert restart["steps_lost"] <= 1
