"""The trial scheduler's decisions, as tables: what to do next given free slots and the trials'
states, what a trial's ending means, and how a multirun's jobs become Hydra outcomes. No Ray here."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import config as C
from orchestrator.search.decisions import (Ending, Step, Then, Verdict, first_line, judge, next_step,
                                           remaining_budget, slots_after_placement_timeout)
from orchestrator.search.jobs import PreparedJob, job_outcomes, largest_gang, varying_keys
from orchestrator.search.ledger import Ledger, TrialRecord
from orchestrator.search.threads import TrialThreads
from orchestrator.search.watch import TrialWatch
from orchestrator.driver.supervisor import StopSignal


@pytest.mark.parametrize("free,interrupted,remaining,running,expected", [
    (1, False, 3, 0, Step.START),   # room and trials wanted
    (2, False, 1, 1, Step.START),
    (0, False, 3, 2, Step.WAIT),    # full: wait for one to finish
    (1, False, 0, 1, Step.WAIT),    # budget reached, the last ones still run
    (1, False, 0, 0, Step.END),     # budget reached, nothing runs
    (2, True, 3, 1, Step.WAIT),     # Ctrl-C: nothing new, wait for the running ones to stop
    (2, True, 3, 0, Step.END),
    (0, False, 0, 0, Step.END),
])
def test_next_step(free, interrupted, remaining, running, expected):
    assert next_step(free, interrupted, remaining, running) is expected


@pytest.mark.parametrize("budget,finished,running,expected", [
    (4, 0, 0, 4), (4, 1, 2, 1), (4, 3, 1, 0), (4, 4, 0, 0), (2, 3, 0, 0),  # never negative
])
def test_remaining_budget(budget, finished, running, expected):
    assert remaining_budget(budget, finished, running) == expected


@pytest.mark.parametrize("ending,expected", [
    (Ending(run_status="completed"), Verdict("completed")),
    (Ending(run_status="interrupted", pruned_at=40), Verdict("pruned", "pruned at step 40")),
    (Ending(run_status="interrupted"), Verdict("interrupted", "queued again", Then.CONTINUE)),
    (Ending(error="boom"), Verdict("failed", "boom")),
    (Ending(error="x" * 500), Verdict("failed", "x" * 300)),
    (Ending(error="no room", placement_timeout=True, others_running=2),
     Verdict("requeued", "no room for the gang; queued again", Then.RUN_AGAIN)),
    (Ending(error="no room", placement_timeout=True, others_running=0),
     Verdict("failed", "the cluster cannot hold one gang", Then.END_SEARCH)),
])
def test_judge(ending, expected):
    assert judge(ending) == expected


@pytest.mark.parametrize("error,expected", [
    (RuntimeError("first\nsecond"), "first"),
    (KeyboardInterrupt(), "KeyboardInterrupt"),
    (ValueError("  \n"), "ValueError"),
])
def test_first_line(error, expected):
    assert first_line(error) == expected


@pytest.mark.parametrize("running,expected", [(0, 1), (1, 1), (3, 3)])
def test_slots_after_placement_timeout(running, expected):
    assert slots_after_placement_timeout(running) == expected


@pytest.mark.parametrize("direction,scope,values,expected", [
    ("max", "best", [0.5, 0.9, 0.7], 0.9),
    ("max", "last", [0.5, 0.9, 0.7], 0.7),
    ("min", "best", [0.5, 0.2, 0.7], 0.2),
    ("min", "last", [], None),
])
def test_watch_keeps_best_or_last(direction, scope, values, expected):
    watch = TrialWatch(C.SearchConfig(direction=direction, scope=scope), StopSignal())
    for step, value in enumerate(values):
        watch(step, {"val/accuracy": value, "val/loss": 1.0})
    assert watch.value == expected
    assert not watch.stop.requested


def test_watch_stops_a_pruned_trial_once():
    watch = TrialWatch(C.SearchConfig(), StopSignal(), should_prune=lambda step, value: step >= 20)
    for step in (10, 20, 30):
        watch(step, {"val/accuracy": 0.1})
    watch(40, {"train/loss": 1.0})  # no search metric: not a pruning point
    assert watch.pruned_at == 20 and watch.stop.requested and not watch.stop.force.is_set()
    assert watch.stop.reason.startswith("pruned at step 20")


def record(number, status, metrics=None, note=""):
    return TrialRecord(number=number, params={}, run_dir=f"/r/{number}", status=status,
                       metrics=metrics or {}, note=note)


def test_job_outcomes(tmp_path: Path):
    ledger = Ledger(tmp_path / "trials.json")
    for r in [record(0, "completed", {"val/accuracy": 0.9}), record(1, "failed", note="boom"),
              record(2, "interrupted", {"val/accuracy": 0.5}), record(3, "requeued"), record(5, "failed", note="why")]:
        ledger.put(r)
    error = RuntimeError("the real error")
    outcomes = job_outcomes([0, 1, 2, 3, 4, 5], ledger, {1: error})
    assert outcomes[0] == {"val/accuracy": 0.9} and outcomes[2] == {"val/accuracy": 0.5}
    assert outcomes[1] is error
    assert "not run" in str(outcomes[3]) and "not run" in str(outcomes[4])
    assert str(outcomes[5]) == "why"


def job(number, overrides, num_workers=2):
    cfg = C.Config(model=C.MLPConfig(), data=C.DigitsConfig(), optimizer=C.SGDConfig(),
                   scheduler=C.ConstantSchedulerConfig(), scaling=C.ScalingConfig(num_workers=num_workers))
    return PreparedJob(number=number, overrides=overrides, run_dir=Path(f"/s/{number}"), cfg=cfg)


@pytest.mark.parametrize("jobs,expected", [
    ([job(0, ["optimizer.lr=0.1", "model=mlp"]), job(1, ["optimizer.lr=0.2", "model=mlp"])], ["optimizer.lr"]),
    ([job(0, ["a=1", "b=1", "hydra.verbose=true"]), job(1, ["a=1", "b=2"])], ["b"]),
    ([job(0, ["a=1", "b=1"])], ["a", "b"]),  # one job: every override is a column
])
def test_varying_keys(jobs, expected):
    assert varying_keys(jobs) == expected


def test_largest_gang_counts_room_for_the_biggest_job():
    jobs = [job(0, [], num_workers=2), job(1, [], num_workers=3), job(2, [], num_workers=1)]
    assert largest_gang(jobs).scaling.num_workers == 3


def test_threads_run_at_most_their_slots_and_report_errors():
    threads = TrialThreads(slots=2)
    threads.start("a", lambda: 1)
    threads.start("b", lambda: 1 / 0)
    assert threads.free == 0
    finished = {f.key: f for f in (threads.wait(timeout=10), threads.wait(timeout=10))}
    assert finished["a"].result == 1 and finished["a"].error is None
    assert isinstance(finished["b"].error, ZeroDivisionError)
    assert threads.free == 2 and threads.wait(timeout=0.01) is None
