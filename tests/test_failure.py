"""The failure policy as a decision table, and which of an incident's errors is the root cause."""

from __future__ import annotations

import pytest

from orchestrator.policy.failure import Action, Failure, Kind, decide, is_collective_error, root_cause


def died(step=10, rank=1, at=0.0):
    return Failure(Kind.WORKER_DIED, rank, step, "The actor died unexpectedly", error_type="ActorDiedError",
                   detected_at=at)


def exception(message="division by zero", error_type="ZeroDivisionError", step=10, rank=0, at=0.0):
    return Failure(Kind.EXCEPTION, rank, step, message, error_type=error_type, detected_at=at)


def hang(step=10):
    return Failure(Kind.HANG, None, step, "no progress on any rank for 60s")


def start():
    return Failure(Kind.START, None, 0, "placement group not ready")


# ----------------------------------------------------------------------------- decide
@pytest.mark.parametrize("failure,history,max_failures,action", [
    # Under the budget: restart (failures 1..max_failures).
    (died(), [], 3, Action.RESTART),
    (died(step=30), [died(step=10), died(step=20)], 3, Action.RESTART),
    (hang(), [hang(), hang()], 3, Action.RESTART),
    # Over it: raise.
    (died(step=40), [died(step=10), died(step=20), died(step=30)], 3, Action.RAISE),
    (died(), [], 0, Action.RAISE),
    (exception(), [], 0, Action.RAISE),
    # The same exception at the same step again: a bug, raise even with budget left.
    (exception(), [exception()], 10, Action.RAISE),
    (exception(), [died(), exception(), hang()], 10, Action.RAISE),
    (exception(message="boom\nTraceback line A"), [exception(message="boom\nTraceback line B")], 10, Action.RAISE),
    # Different exceptions (message, type or step): faults, restart.
    (exception(message="boom"), [exception(message="bang")], 10, Action.RESTART),
    (exception(error_type="ValueError"), [exception(error_type="KeyError")], 10, Action.RESTART),
    (exception(step=11), [exception(step=10)], 10, Action.RESTART),
    # Deaths and hangs at the same step are faults (a lost node), not bugs: restart.
    (died(), [died()], 10, Action.RESTART),
    (hang(), [hang()], 10, Action.RESTART),
    # A replacement gang could not be started (no capacity yet): a failure like the others.
    (start(), [died()], 10, Action.RESTART),
    (start(), [died(), start(), start()], 3, Action.RAISE),
], ids=["first", "third-of-3", "hang-third-of-3", "fourth-of-3", "no-budget", "no-budget-exception",
        "same-exception", "same-exception-earlier", "same-first-line", "other-message", "other-type",
        "other-step", "death-twice", "hang-twice", "start-after-death", "start-over-budget"])
def test_decide(failure, history, max_failures, action):
    decision = decide(failure, history, max_failures)
    assert decision.action == action
    assert decision.reason


def test_over_budget_reason_names_trainer_max_failures():
    decision = decide(died(), [died(step=s) for s in (1, 2)], 2)
    assert decision.action == Action.RAISE
    assert "failure.max_failures=2" in decision.reason


def test_repeated_exception_reason_says_it_is_a_bug():
    decision = decide(exception(), [exception()], 10)
    assert "ZeroDivisionError" in decision.reason and "step 10" in decision.reason


def test_signature_is_kind_type_first_line_and_step():
    a = exception(message="  boom\nmore", rank=0)
    b = exception(message="boom\nother", rank=3)  # another rank, same bug
    assert a.signature == b.signature
    assert exception(step=11).signature != exception(step=10).signature
    assert died().signature != exception().signature


def test_describe_names_kind_rank_node_step_and_first_line():
    f = Failure(Kind.EXCEPTION, 2, 17, "ValueError: bad\n  File x.py", node="10.0.0.5", error_type="ValueError")
    assert f.describe() == "exception of rank 2 on node 10.0.0.5 at step 17: ValueError: bad"
    assert hang(step=4).describe().startswith("hang of the gang at step 4")


# ----------------------------------------------------------------------------- root cause
def collective(at, rank=0):
    return exception("Connection closed by peer [10.0.0.2]:1234", error_type="DistBackendError", rank=rank, at=at)


def test_root_cause_a_dead_worker_beats_exceptions_and_their_symptoms():
    failures = [collective(at=1.0), exception(at=2.0), died(at=3.0)]
    assert root_cause(failures).kind == Kind.WORKER_DIED


def test_root_cause_an_exception_beats_collective_error_symptoms():
    cause = exception(at=5.0, rank=1)
    assert root_cause([collective(at=1.0, rank=0), cause, collective(at=2.0, rank=2)]) is cause


def test_root_cause_among_equals_is_the_first_detected():
    early, late = exception(message="a", at=1.0), exception(message="b", at=2.0)
    assert root_cause([late, early]) is early
    c1, c2 = collective(at=4.0), collective(at=3.0)
    assert root_cause([c1, c2]) is c2
    d1, d2 = died(at=9.0, rank=0), died(at=8.0, rank=1)
    assert root_cause([d1, d2]) is d2


def test_root_cause_of_a_single_failure_is_itself():
    only = hang()
    assert root_cause([only]) is only


@pytest.mark.parametrize("error_type,message,expected", [
    ("DistBackendError", "anything", True),
    ("RuntimeError", "[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer", True),
    ("RuntimeError", "Connection reset by peer", True),
    ("RuntimeError", "NCCL error in: ProcessGroupNCCL.cpp", True),
    ("RuntimeError", "Socket Timeout", True),
    ("ZeroDivisionError", "division by zero", False),
    ("KeyError", "'val/loss'", False),
])
def test_collective_errors_are_recognised(error_type, message, expected):
    assert is_collective_error(exception(message=message, error_type=error_type)) is expected


def test_bad_data_is_not_restarted_whatever_the_budget():
    """A corrupt file is as corrupt after a restart (data/bad_samples.py raises BadDataError)."""
    bad = Failure(Kind.EXCEPTION, 1, 40, "data: cannot read /d/shard-3.tar sample 17: ...", error_type="BadDataError")
    decision = decide(bad, [], max_failures=5)
    assert decision.action == Action.RAISE and "bad data" in decision.reason
