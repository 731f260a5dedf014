"""The driver's control loop: one object that moves a run through named states.

    STARTING ---gang placed---> RUNNING ---finished---> FINISHED (completed)
       |  ^                      |  |---stopped on request / interrupted---> STOPPING ---> FINISHED (interrupted)
       |  |                      |  '---non-finite loss (health.nan_policy=stop)---> FAILED
       |  '---restart---- RECOVERING <---failed---'
       |                      |---healed from live peers (failure.recovery=peer)---> RUNNING
       |                      '---raise---> FAILED
       |---asked to stop---> STOPPING
       '---a replacement gang cannot start---> RECOVERING (the first start raises its error as it is)

What to do is decided by injected policies (``failure.FailurePolicy``: restart or raise;
``plan.ScalingPolicy``: which gang to ask for and how it keeps the batch) and by the pure tables
below; carrying it out on Ray is the ``Gangs`` object's job (``gang_runner.GangRunner``). The
controller holds what the attempts share, so no function threads it down by hand.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple, Union

from ray.exceptions import RayActorError, RayTaskError

from orchestrator import config as C
from orchestrator.checkpoint.store import CheckpointStore, StoredCheckpoint
from orchestrator.policy.failure import (Action, Decision, Failure, FailurePolicy, Kind, MaxFailuresPolicy, policy_from_config,
                                         is_config_error)
from orchestrator.policy.outcomes import AttemptStatus, Outcome, RunFailed, RunStatus, StopKind
from orchestrator.policy.plan import AttemptPlan, ElasticPolicy, GangRequest, ScalingPolicy
from orchestrator.policy.recovery import HealPlan
from orchestrator.driver.recorder import Recorder
from orchestrator.driver.supervisor import StopSignal
from orchestrator.driver.worker_group import PlacementTimeout, RendezvousTimeout, WorkerStartTimeout

# Starting a replacement gang can fail like this; it counts as a failure (failure.max_failures).
RESTART_ERRORS = (PlacementTimeout, WorkerStartTimeout, RendezvousTimeout, RayActorError, RayTaskError)

Resume = StoredCheckpoint  # a checkpoint to start from: where it is and its manifest


class State(Enum):
    STARTING = "starting"       # placing a gang (the first, or a replacement)
    RUNNING = "running"         # one attempt trains, watched until it finishes, fails or is stopped
    RECOVERING = "recovering"   # an attempt failed: the failure policy decides
    STOPPING = "stopping"       # asked to stop: the gang is released (with its final checkpoint)
    FINISHED = "finished"       # terminal: completed or interrupted
    FAILED = "failed"           # terminal: RunFailed


TERMINAL = (State.FINISHED, State.FAILED)


# ----------------------------------------------------------------------------- decision tables (pure)
def after_attempt(outcome: Outcome, stop_requested: bool) -> State:
    """Where an attempt's end leads. A finished gang's own result comes first: a run that reached
    max_steps as Ctrl-C arrived is complete."""
    if outcome.status is AttemptStatus.FINISHED:
        if outcome.stop_kind is StopKind.NON_FINITE:  # deterministic: restarting would meet it again
            return State.FAILED
        return State.STOPPING if outcome.stopped_on_request else State.FINISHED
    if outcome.status is AttemptStatus.INTERRUPTED or stop_requested:
        return State.STOPPING
    return State.RECOVERING


def after_decision(decision: Decision) -> State:
    return State.STARTING if decision.action is Action.RESTART else State.FAILED


# ----------------------------------------------------------------------------- what the controller drives
class Gang(Protocol):
    def shutdown(self) -> None: ...


class Gangs(Protocol):
    """Carries the controller's decisions out (on Ray: ``gang_runner.GangRunner``)."""

    def start(self, request: GangRequest) -> Gang:
        """A gang of ``request.world_size``, or PlacementTimeout / another of RESTART_ERRORS."""

    def run(self, gang: Gang, plan: AttemptPlan, resume: Optional[Resume], heal: Optional[HealPlan] = None) -> Outcome:
        """Train one attempt on ``gang`` from ``resume`` (None: from scratch) or, with ``heal``, from its
        survivors' memory; release the gang, unless ``outcome.gang_kept`` (kept for ``heal``)."""

    def heal(self, gang: Gang, failure: Failure) -> Union[HealPlan, str]:
        """Replace the kept gang's dead ranks and re-form it: the plan, or why not (the gang is then released)."""


@dataclass
class RunContext:
    """What every attempt of a run shares."""
    cfg: C.Config
    recorder: Recorder
    store: CheckpointStore
    stop: StopSignal
    resumed_from: Optional[Resume] = None  # trainer.resume's checkpoint, if any


class Controller:
    def __init__(self, run: RunContext, gangs: Gangs, failure_policy: Optional[FailurePolicy] = None,
                 scaling_policy: Optional[ScalingPolicy] = None):
        self.ctx, self.gangs = run, gangs
        self.failure_policy = failure_policy or policy_from_config(run.cfg.failure)
        self.scaling_policy = scaling_policy or ElasticPolicy.from_config(run.cfg)
        self.state = State.STARTING
        self.path: List[State] = [self.state]        # every state taken, in order
        self.attempt = 0
        self.history: List[Failure] = []             # failures so far, oldest first
        self.failure: Optional[Failure] = None       # the one being recovered from
        self.start_from: Optional[Resume] = run.resumed_from  # what the next attempt loads
        self.gang: Optional[Gang] = None
        self.heal_plan: Optional[HealPlan] = None    # the next attempt continues from live peers
        self.plan: Optional[AttemptPlan] = None
        self.status: Optional[RunStatus] = None
        self.error: Optional[Exception] = None       # RunFailed, or a ConfigError found on a worker

    def run(self) -> RunStatus:
        """Completed or interrupted; raises RunFailed (or the first start's error)."""
        handlers: Dict[State, Callable[[], State]] = {
            State.STARTING: self.starting, State.RUNNING: self.running,
            State.RECOVERING: self.recovering, State.STOPPING: self.stopping}
        try:
            while self.state not in TERMINAL:
                self.state = handlers[self.state]()
                self.path.append(self.state)
        finally:
            self.release()  # teardown in one place, also after a second Ctrl-C or a driver error
        if self.state is State.FAILED:
            raise self.error
        return self.status

    # ----------------------------------------------------------------- states
    def starting(self) -> State:
        if self.ctx.stop.requested:  # asked to stop while (re)starting: nothing to resume here
            self.ctx.recorder.log.info["stop_reason"] = self.ctx.stop.reason
            return State.STOPPING
        try:
            self.gang, self.plan = self.start_gang()
        except RESTART_ERRORS as err:
            if self.attempt == 0:
                raise  # the first start fails with what went wrong, e.g. what the cluster cannot hold
            self.failure = Failure(Kind.START, None, self.history[-1].step, message=str(err),
                                   error_type=type(err).__name__, detected_at=time.time())
            return State.RECOVERING
        return State.RUNNING

    def running(self) -> State:
        outcome = self.gangs.run(self.gang, self.plan, self.start_from, self.heal_plan)
        self.heal_plan = None
        if not outcome.gang_kept:
            self.gang = None  # released by the run
        next_state = after_attempt(outcome, self.ctx.stop.requested)
        self.record_end(outcome, next_state)
        return next_state

    def recovering(self) -> State:
        failure = self.failure
        decision = self.failure_policy.decide(failure, self.history)
        self.history.append(failure)
        not_healed = None
        if decision.action is Action.RESTART and self.gang is not None:  # kept: heal it from its survivors
            healed = self.gangs.heal(self.gang, failure)
            if isinstance(healed, HealPlan):
                return self.heal_from_peers(failure, decision, healed)
            not_healed, self.gang = healed, None  # released by heal
        self.release()  # a kept gang that will not be healed (the policy gave up)
        # The newest checkpoint of this run, else the one this run was resumed from.
        latest = self.ctx.store.latest_good() or self.ctx.resumed_from
        self.report_failure(failure, decision, latest.manifest.step if latest else None, not_healed=not_healed)
        next_state = after_decision(decision)
        if next_state is State.FAILED and is_config_error(failure):
            self.error = C.ConfigError(failure.message.strip())  # one line, no worker traceback
        elif next_state is State.FAILED:
            self.error = RunFailed(failure_message(failure, decision), {})
        else:
            self.start_from = latest
            self.attempt += 1
        return next_state

    def heal_from_peers(self, failure: Failure, decision: Decision, heal: HealPlan) -> State:
        """The gang was re-formed with the survivors: the next attempt continues after the source's step."""
        self.report_failure(failure, decision, heal.step, heal=heal)
        self.attempt += 1
        self.plan = self.scaling_policy.plan(self.attempt, self.plan.world_size)
        self.heal_plan = heal
        return State.RUNNING

    def stopping(self) -> State:
        """The gang (if any) wrote its final checkpoint and was released: the run is interrupted."""
        self.status = RunStatus.INTERRUPTED
        return State.FINISHED

    # ----------------------------------------------------------------- carrying decisions out
    def start_gang(self) -> Tuple[Gang, AttemptPlan]:
        """The first gang the scaling policy asks for that the cluster can hold."""
        last_error: Optional[Exception] = None
        for request in self.scaling_policy.gang_requests(self.attempt):
            try:
                gang = self.gangs.start(request)
            except PlacementTimeout as err:
                last_error = err
                continue
            plan = self.scaling_policy.plan(self.attempt, request.world_size)
            full = self.scaling_policy.num_workers
            if plan.world_size < full:
                self.ctx.recorder.event(0, "elastic", f"continuing with {plan.world_size} of {full} workers "
                                                      f"(accumulate {plan.accumulate}, lr x{plan.lr_scale:g})")
            return gang, plan
        raise last_error

    def record_end(self, outcome: Outcome, next_state: State) -> None:
        log = self.ctx.recorder.log
        if outcome.status is AttemptStatus.FINISHED:
            log.info["stop_reason"] = outcome.stop_reason
            log.timing.update(outcome.timing)
        elif next_state is State.STOPPING:
            log.info["stop_reason"] = self.ctx.stop.reason or "interrupted"
        if next_state is State.FINISHED:
            self.status = RunStatus.COMPLETED
        elif next_state is State.FAILED:
            self.error = RunFailed(f"{outcome.stop_reason} (health.nan_policy=stop); the last checkpoint "
                                   "holds the weights before it", {})
        elif next_state is State.RECOVERING:
            self.failure = outcome.failure

    def report_failure(self, failure: Failure, decision: Decision, resume_step: Optional[int],
                       heal: Optional[HealPlan] = None, not_healed: Optional[str] = None) -> None:
        """``heal``: continuing from live peers (path "peer"); else from disk, ``not_healed`` saying why
        a kept gang could not be healed."""
        recorder = self.ctx.recorder
        # The step the gang had reached: a dead rank's heartbeat can lag what the survivors completed.
        step = max(failure.step, resume_step or 0)
        steps_lost = heal.steps_lost if heal else step - (resume_step or 0)
        path = "peer" if heal else "disk"
        entry: Dict[str, Any] = {
            "attempt": self.attempt, "kind": failure.kind.value, "rank": failure.rank, "node": failure.node,
            "step": step, "message": failure.message.strip()[:2000], "action": decision.action.value,
            "reason": decision.reason, "resume_step": resume_step, "steps_lost": steps_lost,
            "detected_unix": failure.detected_at}
        if decision.action == Action.RESTART:
            entry["path"] = path
            entry.update(self.heal_details(heal, not_healed))
        recorder.log.restarts.append(entry)
        recorder.tb.scalars(step, {"fault/failures": float(len(recorder.log.restarts)),
                                   "fault/steps_lost": float(steps_lost),
                                   "fault/peer_recovery": float(heal is not None)}, replayable=False)
        detail = f"\n{failure.traceback}" if failure.kind == Kind.HANG else ""
        source = (f"healing from rank {heal.source}'s memory (rank(s) {', '.join(map(str, heal.replaced))} "
                  f"replaced)" if heal else "resuming from the checkpoint"
                  + (f" (no peer recovery: {not_healed})" if not_healed else ""))
        resuming = (f"; {source} at step {resume_step} ({steps_lost} steps lost)"
                    if decision.action == Action.RESTART else "")
        recorder.event(failure.step, "failure", f"{failure.describe()}; {decision.action.value}: "
                                                f"{decision.reason}{resuming}{detail}", style="red")

    def heal_details(self, heal: Optional[HealPlan], not_healed: Optional[str]) -> Dict[str, Any]:
        if heal is None:
            return {"not_healed": not_healed} if not_healed else {}
        return {"source_rank": heal.source, "replaced": list(heal.replaced),
                **getattr(self.gangs, "last_heal", {})}

    def release(self) -> None:
        if self.gang is not None:
            self.gang.shutdown()
            self.gang = None


def failure_message(failure: Failure, decision: Decision) -> str:
    where = f"rank {failure.rank}" if failure.rank is not None else "the gang"
    trace = f"\nTraceback from {where}:\n{failure.traceback}" if failure.traceback else ""
    return f"{failure.describe()}\n{decision.reason}{trace}"
