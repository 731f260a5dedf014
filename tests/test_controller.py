"""The controller's states and its policies as decision tables: no Ray cluster, a scripted gang runner.

The recorder, TensorBoard writer and checkpoint store are the real ones (in a temp dir); only the
gangs are fakes, which return the outcomes a real attempt would.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional

import pytest

from orchestrator import config as C
from orchestrator.driver.controller import Controller, RunContext, State, after_attempt, after_decision
from orchestrator.checkpoint.store import CheckpointStore, Manifest, StoredCheckpoint
from orchestrator.policy.failure import Action, Decision, Failure, Kind, MaxFailuresPolicy, decide
from orchestrator.policy.outcomes import AttemptStatus, Outcome, RunFailed, RunStatus, StopKind
from orchestrator.policy.plan import AttemptPlan, ElasticPolicy, GangRequest, plan_attempt
from orchestrator.policy.recovery import HealPlan
from orchestrator.driver.progress import ProgressView
from orchestrator.driver.recorder import Recorder
from orchestrator.driver.supervisor import StopSignal
from orchestrator.driver.tensorboard_sink import TensorBoardSink
from orchestrator.driver.worker_group import PlacementTimeout

S = State


def make_config(num_workers=2, min_workers=None, max_failures=3, restart_wait_s=5.0) -> C.Config:
    return C.Config(model=C.MLPConfig(), data=C.DigitsConfig(batch_size=32), optimizer=C.SGDConfig(),
                    scheduler=C.ConstantSchedulerConfig(),
                    scaling=C.ScalingConfig(num_workers=num_workers, min_workers=min_workers, placement_timeout_s=7.0),
                    failure=C.FailureConfig(max_failures=max_failures, restart_wait_s=restart_wait_s))


def finished(kind=StopKind.MAX_EPOCHS, reason=None, on_request=False) -> Outcome:
    result = {"stop_reason": reason or kind.value, "stop_kind": kind, "step": 10, "epoch": 1,
              "stopped_on_request": on_request, "metrics": {}, "timing": {"steady_samples_per_sec": 5.0}}
    return Outcome(AttemptStatus.FINISHED, result=result, last_step=10)


def failed(kind=Kind.WORKER_DIED, step=10, message="The actor died unexpectedly", error_type="ActorDiedError",
           traceback="") -> Outcome:
    failure = Failure(kind, 1, step, message, error_type=error_type, traceback=traceback, detected_at=1.0)
    return Outcome(AttemptStatus.FAILED, failure=failure, last_step=step)


def interrupted() -> Outcome:
    return Outcome(AttemptStatus.INTERRUPTED, last_step=5)


# ----------------------------------------------------------------------------- pure tables
@pytest.mark.parametrize("outcome,stop_requested,expected", [
    (finished(), False, S.FINISHED),
    (finished(StopKind.MAX_STEPS), True, S.FINISHED),  # the run completed as Ctrl-C arrived
    (finished(StopKind.EARLY_STOPPING, "early stopping: no improvement"), False, S.FINISHED),
    (finished(StopKind.OVERFITTING, "overfitting: val loss rising"), False, S.FINISHED),
    (finished(StopKind.NON_FINITE, "non-finite loss at step 12"), False, S.FAILED),
    (finished(StopKind.REQUESTED, "interrupted (SIGINT)", on_request=True), True, S.STOPPING),
    (interrupted(), True, S.STOPPING),
    (failed(), False, S.RECOVERING),
    (failed(), True, S.STOPPING),  # a failure while stopping is not restarted
], ids=["max-epochs", "max-steps-while-stopping", "early-stopping", "overfitting", "non-finite",
        "stopped-on-request", "interrupted", "failed", "failed-while-stopping"])
def test_where_an_attempt_leads(outcome, stop_requested, expected):
    assert after_attempt(outcome, stop_requested) is expected


def test_a_nan_stop_is_recognised_by_its_kind_not_its_text():
    # The same words with another kind complete; the kind alone decides.
    assert after_attempt(finished(StopKind.EARLY_STOPPING, "non-finite loss at step 3"), False) is S.FINISHED
    assert after_attempt(finished(StopKind.NON_FINITE, "anything"), False) is S.FAILED


@pytest.mark.parametrize("action,expected", [(Action.RESTART, S.STARTING), (Action.RAISE, S.FAILED)])
def test_where_a_failure_decision_leads(action, expected):
    assert after_decision(Decision(action, "why")) is expected


def test_max_failures_policy_is_the_decide_table():
    died = failed().failure
    history = [failed(step=s).failure for s in (1, 2)]
    for max_failures in (0, 1, 2, 3, 10):
        assert MaxFailuresPolicy(max_failures).decide(died, history) == decide(died, history, max_failures)


@pytest.mark.parametrize("attempt,num_workers,min_workers,restart_wait_s,expected", [
    (0, 4, None, 5.0, [(4, 7.0)]),                           # first start: the full gang
    (0, 4, 2, 5.0, [(4, 7.0)]),                              # elastic only after a failure
    (1, 4, None, 5.0, [(4, 5.0)]),                           # restart: wait restart_wait_s for the full gang
    (1, 4, 2, 5.0, [(4, 5.0), (3, 7.0), (2, 7.0)]),          # then smaller gangs, largest first
    (2, 3, 1, 0.0, [(3, 1.0), (2, 7.0), (1, 7.0)]),          # at least 1 s for the full gang
])
def test_elastic_policy_gang_requests(attempt, num_workers, min_workers, restart_wait_s, expected):
    policy = ElasticPolicy.from_config(make_config(num_workers, min_workers, restart_wait_s=restart_wait_s))
    assert policy.gang_requests(attempt) == [GangRequest(size, wait) for size, wait in expected]


@pytest.mark.parametrize("world", [4, 3, 2, 1])
def test_elastic_policy_plans_like_plan_attempt(world):
    cfg = make_config(4, 1)
    assert ElasticPolicy.from_config(cfg).plan(2, world) == plan_attempt(cfg, 2, world)


# ----------------------------------------------------------------------------- the controller
class FakeGang:
    def __init__(self, size: int):
        self.size = size
        self.released = 0

    def shutdown(self) -> None:
        self.released += 1


class ScriptedGangs:
    """Starts gangs of the sizes that fit and returns the scripted outcomes, one per attempt."""

    def __init__(self, outcomes: List, fits=lambda request: True, store: Optional[CheckpointStore] = None,
                 heals: List = ()):
        self.outcomes = list(outcomes)
        self.heals = list(heals)  # what each heal() answers: a HealPlan, or why not
        self.fits = fits
        self.store = store
        self.requests: List[GangRequest] = []
        self.runs: List[tuple] = []  # (plan, resume checkpoint) per attempt
        self.gangs: List[FakeGang] = []

    def start(self, request: GangRequest) -> FakeGang:
        self.requests.append(request)
        if not self.fits(request):
            raise PlacementTimeout(f"cannot hold {request.world_size} workers")
        self.gangs.append(FakeGang(request.world_size))
        return self.gangs[-1]

    def run(self, gang: FakeGang, plan: AttemptPlan, resume: Optional[StoredCheckpoint], heal=None):
        self.runs.append((plan, resume, heal))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome  # before the gang is released: the controller's teardown must do it
        if callable(outcome):
            outcome = outcome()
        if not outcome.gang_kept:
            gang.shutdown()  # like the real runner: an attempt that ends releases its gang, unless kept to heal
        return outcome

    def heal(self, gang: FakeGang, failure: Failure):
        answer = self.heals.pop(0)
        if not isinstance(answer, HealPlan):
            gang.shutdown()  # like the real runner: a gang that cannot be healed is released
        return answer


@pytest.fixture
def context(tmp_path):
    def make(cfg: Optional[C.Config] = None, resumed_from=None) -> RunContext:
        cfg = cfg or make_config()
        recorder = Recorder(TensorBoardSink(tmp_path / "tb"), ProgressView("test", enabled=False))
        store = CheckpointStore(tmp_path / "checkpoints", cfg.checkpoint, warn=lambda m: None,
                                check_payload=None)  # opaque payloads
        return RunContext(cfg, recorder, store, StopSignal(), resumed_from)
    return make


def test_a_run_that_finishes(context):
    ctx = context()
    gangs = ScriptedGangs([finished()])
    assert Controller(ctx, gangs).run() == RunStatus.COMPLETED
    assert ctx.recorder.log.info["stop_reason"] == "max_epochs"
    assert ctx.recorder.log.timing["steady_samples_per_sec"] == 5.0
    assert [plan for plan, _, _ in gangs.runs] == [AttemptPlan(0, 2, 1)]


def test_a_death_is_recovered_from_the_newest_checkpoint(context):
    ctx = context()

    def die_after_a_checkpoint():
        ctx.store.save(8, b"weights at step 8", epoch=0, metrics={})
        return failed(step=10)

    gangs = ScriptedGangs([die_after_a_checkpoint, finished()])
    controller = Controller(ctx, gangs)
    assert controller.run() is RunStatus.COMPLETED
    assert controller.path == [S.STARTING, S.RUNNING, S.RECOVERING, S.STARTING, S.RUNNING, S.FINISHED]
    assert [resume.read() if resume else None for _, resume, _ in gangs.runs] == [None, b"weights at step 8"]
    assert [plan.attempt for plan, _, _ in gangs.runs] == [0, 1]
    (restart,) = ctx.recorder.log.restarts
    assert (restart["action"], restart["resume_step"], restart["steps_lost"]) == ("restart", 8, 2)


def test_a_restart_without_new_checkpoints_starts_from_the_resumed_one(context):
    resumed = StoredCheckpoint("/elsewhere", Manifest(step=3, epoch=0, file="step-000000003.pt", bytes=12, sha256=""))
    ctx = context(resumed_from=resumed)
    gangs = ScriptedGangs([failed(step=5), finished()])
    Controller(ctx, gangs).run()
    assert [resume for _, resume, _ in gangs.runs] == [resumed, resumed]


def test_a_nan_stop_fails_the_run_without_a_restart(context):
    ctx = context()
    gangs = ScriptedGangs([finished(StopKind.NON_FINITE, "non-finite loss at step 12")])
    controller = Controller(ctx, gangs)
    with pytest.raises(RunFailed, match="non-finite loss at step 12"):
        controller.run()
    assert controller.path == [S.STARTING, S.RUNNING, S.FAILED]
    assert ctx.recorder.log.restarts == [] and len(gangs.runs) == 1
    assert ctx.recorder.log.info["stop_reason"] == "non-finite loss at step 12"


def test_the_same_exception_twice_fails_with_its_traceback(context):
    boom = dict(kind=Kind.EXCEPTION, message="division by zero", error_type="ZeroDivisionError",
                traceback="Traceback (most recent call last): ...")
    ctx = context()
    controller = Controller(ctx, ScriptedGangs([failed(**boom), failed(**boom)]))
    with pytest.raises(RunFailed, match="same exception") as err:
        controller.run()
    assert "Traceback from rank 1" in str(err.value)
    assert controller.path[-3:] == [S.RUNNING, S.RECOVERING, S.FAILED]
    assert [r["action"] for r in ctx.recorder.log.restarts] == ["restart", "raise"]


def test_failures_beyond_the_budget_fail_the_run(context):
    ctx = context(make_config(max_failures=1))
    controller = Controller(ctx, ScriptedGangs([failed(step=4), failed(step=9)]))
    with pytest.raises(RunFailed, match="failure.max_failures=1"):
        controller.run()
    assert controller.attempt == 1 and len(controller.history) == 2


def test_a_stop_before_the_gang_starts_interrupts_without_starting_it(context):
    ctx = context()
    ctx.stop.request("interrupted (SIGINT)")
    gangs = ScriptedGangs([])
    controller = Controller(ctx, gangs)
    assert controller.run() is RunStatus.INTERRUPTED
    assert controller.path == [S.STARTING, S.STOPPING, S.FINISHED]
    assert gangs.requests == [] and ctx.recorder.log.info["stop_reason"] == "interrupted (SIGINT)"


def test_a_run_stopped_on_request_is_interrupted_with_the_workers_reason(context):
    ctx = context()

    def pruned_while_training():
        ctx.stop.request("pruned")
        return finished(StopKind.REQUESTED, "pruned at step 40", on_request=True)

    controller = Controller(ctx, ScriptedGangs([pruned_while_training]))
    assert controller.run() is RunStatus.INTERRUPTED
    assert controller.path == [S.STARTING, S.RUNNING, S.STOPPING, S.FINISHED]
    assert ctx.recorder.log.info["stop_reason"] == "pruned at step 40"


def test_an_interrupted_attempt_is_not_restarted(context):
    ctx = context()

    def ctrl_c_twice():
        ctx.stop.request("interrupted (SIGINT)")
        ctx.stop.request("interrupted (SIGINT)")
        return interrupted()

    gangs = ScriptedGangs([ctrl_c_twice])
    assert Controller(ctx, gangs).run() is RunStatus.INTERRUPTED
    assert len(gangs.runs) == 1 and ctx.recorder.log.restarts == []


def test_an_elastic_restart_continues_with_the_largest_gang_that_fits(context):
    ctx = context(make_config(num_workers=4, min_workers=2))
    gangs = ScriptedGangs([failed(), finished()])
    gangs.fits = lambda r: not gangs.runs or r.world_size <= 2  # the full gang fits only at first
    assert Controller(ctx, gangs).run() is RunStatus.COMPLETED
    assert [r.world_size for r in gangs.requests] == [4, 4, 3, 2]
    assert gangs.runs[1][0] == AttemptPlan(1, 2, 2)  # keeps the global batch by accumulating
    assert any(e["event"] == "elastic" and "2 of 4 workers" in e["message"] for e in ctx.recorder.log.events)


def test_a_replacement_gang_that_cannot_start_counts_as_a_failure(context):
    ctx = context(make_config(max_failures=2))
    gangs = ScriptedGangs([failed(step=6)])
    gangs.fits = lambda r: not gangs.runs  # after the first attempt the cluster has no room
    controller = Controller(ctx, gangs)
    with pytest.raises(RunFailed, match="failure.max_failures=2"):
        controller.run()
    kinds = [r["kind"] for r in ctx.recorder.log.restarts]
    assert kinds == ["worker_died", "start", "start"]
    assert ctx.recorder.log.restarts[1]["step"] == 6  # the gang's last known step
    assert controller.path.count(S.RECOVERING) == 3


def test_the_first_start_raises_what_went_wrong(context):
    controller = Controller(context(), ScriptedGangs([], fits=lambda r: False))
    with pytest.raises(PlacementTimeout, match="cannot hold 2 workers"):
        controller.run()
    assert controller.path == [S.STARTING]


def test_the_gang_is_released_when_the_driver_is_stopped_at_once(context):
    gangs = ScriptedGangs([KeyboardInterrupt()])
    controller = Controller(context(), gangs)
    with pytest.raises(KeyboardInterrupt):
        controller.run()
    assert [g.released for g in gangs.gangs] == [1] and controller.gang is None


def test_injected_policies_decide(context):
    class NeverRestart:
        def decide(self, failure, history):
            return Decision(Action.RAISE, "this project never restarts")

    class OneWorker(ElasticPolicy):
        def gang_requests(self, attempt):
            return [GangRequest(1, 3.0)]

    ctx = context()
    policy = dataclasses.replace(OneWorker.from_config(ctx.cfg), num_workers=1)
    gangs = ScriptedGangs([failed()])
    with pytest.raises(RunFailed, match="never restarts"):
        Controller(ctx, gangs, failure_policy=NeverRestart(), scaling_policy=policy).run()
    assert gangs.requests == [GangRequest(1, 3.0)] and gangs.runs[0][0].world_size == 1


# ----------------------------------------------------------------------------- healing from live peers
def kept(outcome: Outcome) -> Outcome:
    return dataclasses.replace(outcome, gang_kept=True)


def test_a_kept_gang_is_healed_and_the_next_attempt_runs_on_it(context):
    ctx = context()
    plan = HealPlan(source=0, step=10, receivers=(1,), replaced=(1,), steps_lost=1)
    gangs = ScriptedGangs([kept(failed(step=11)), finished()], heals=[plan])
    assert Controller(ctx, gangs).run() == RunStatus.COMPLETED
    assert len(gangs.requests) == 1, "no new gang: the survivors' gang goes on"
    assert [heal for _, _, heal in gangs.runs] == [None, plan]
    assert gangs.runs[1][0].attempt == 1
    (restart,) = ctx.recorder.log.restarts
    assert restart["path"] == "peer" and restart["resume_step"] == 10 and restart["steps_lost"] == 1
    assert restart["source_rank"] == 0 and restart["replaced"] == [1]
    assert gangs.gangs[0].released == 1


def test_a_gang_that_cannot_be_healed_restarts_from_disk_and_says_why(context):
    ctx = context()
    gangs = ScriptedGangs([kept(failed(step=11)), finished()], heals=["no rank survived with its state"])
    assert Controller(ctx, gangs).run() == RunStatus.COMPLETED
    assert len(gangs.requests) == 2 and gangs.gangs[0].released == 1
    (restart,) = ctx.recorder.log.restarts
    assert restart["path"] == "disk" and restart["not_healed"] == "no rank survived with its state"
    assert gangs.runs[1][2] is None


def test_a_kept_gang_is_released_when_the_policy_gives_up(context):
    ctx = context(make_config(max_failures=0))
    gangs = ScriptedGangs([kept(failed(step=11))], heals=[])
    with pytest.raises(RunFailed):
        Controller(ctx, gangs).run()
    assert gangs.gangs[0].released == 1 and not gangs.heals
