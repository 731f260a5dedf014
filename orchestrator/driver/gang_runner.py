"""Carries the controller's decisions out on Ray: places a gang, runs one attempt on it under a
Supervisor, releases it. Owns what the attempts share on Ray's side: the data in the object
store and the run's RunSink actor."""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Optional, Union

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from orchestrator import config as C
from orchestrator.attempt import AttemptArgs
from orchestrator.checkpoint.store import CheckpointStore, StoredCheckpoint
from orchestrator.checkpoint.transport import Transport, decide_transport
from orchestrator.policy.failure import Failure, Kind, is_collective_error
from orchestrator.policy.outcomes import AttemptStatus, Outcome
from orchestrator.policy.recovery import Held, HealPlan, plan_heal
from orchestrator.policy.plan import AttemptPlan, GangRequest
from orchestrator.policy.start_bounds import start_bounds
from orchestrator.driver.gang_pool import GangPool, GangShape
from orchestrator.driver.recorder import Recorder
from orchestrator.driver.supervisor import StopSignal, Supervisor, first_line
from orchestrator.driver.worker_group import RendezvousTimeout, WorkerGroup, WorkerStartTimeout, release
from orchestrator.search.verdicts import VerdictChannel


class GangRunner:
    def __init__(self, cfg: C.Config, recorder: Recorder, stop: StopSignal, hang_dumps: Optional[Path] = None,
                 pool: Optional[GangPool] = None, verdicts: Optional[VerdictChannel] = None):
        self.cfg, self.recorder, self.stop = cfg, recorder, stop
        self.hang_dumps = hang_dumps  # where a hang's full stack dump is written
        self.pool = pool          # a search's warm gangs: take one of this shape, hand it back after a clean finish
        self.verdicts = verdicts  # a search trial with a pruner: where rank 0 asks for the verdict
        self.shared_data = None
        self.sink = None
        self.checkpoint_dir: Optional[str] = None
        self.last_heal: Dict = {}  # how the latest heal filled the dead ranks, and how long it took

    @contextmanager
    def opened(self, data, store: CheckpointStore) -> Iterator["GangRunner"]:
        """Hand the data to the workers (in-memory data goes to the object store once; every worker
        maps it) and start the sink."""
        t0 = time.perf_counter()
        self.shared_data = data.to_workers()
        self.recorder.log.timing["data_share_s"] = time.perf_counter() - t0
        self.sink = start_run_sink(store)
        self.checkpoint_dir = str(store.directory.resolve())  # where rank 0 writes, with the direct transport
        try:
            yield self
        finally:
            ray.kill(self.sink)

    def start(self, request: GangRequest) -> WorkerGroup:
        t0 = time.perf_counter()
        warm = self.pool.take(GangShape.of(self.cfg, request.world_size)) if self.pool is not None else None
        self.recorder.log.info["gang"] = {"warm": warm is not None}
        if warm is not None:
            warm.timings = {"gang_reuse_s": time.perf_counter() - t0}  # no placement, start or rendezvous
            return warm
        return self.start_new(request)

    def start_new(self, request: GangRequest) -> WorkerGroup:
        cfg, size, collective_s = self.cfg, request.world_size, self.cfg.failure.collective_timeout_s
        # The request's placement bound (the policy's: scaling.placement_timeout_s, derived per size, or
        # failure.restart_wait_s after a failure), the others from the config.
        bounds = dataclasses.replace(start_bounds(cfg.scaling, cfg.cluster, size, collective_s),
                                     placement=request.placement_bound())
        return WorkerGroup.start(cfg.scaling, cfg.cluster, size, collective_s,
                                 use_gpus=cfg.trainer.device != "cpu", bounds=bounds,
                                 spares=cfg.trainer.spare_workers)

    def run(self, group: WorkerGroup, plan: AttemptPlan, resume: Optional[StoredCheckpoint],
            heal: Optional[HealPlan] = None) -> Outcome:
        """One attempt: train on this gang until it finishes, fails or is stopped (``heal``: continuing
        from the survivors' memory, see ``heal``). The gang is released, except after a lost worker
        with failure.recovery=peer: then ``outcome.gang_kept`` and the controller asks ``heal``."""
        keep, outcome = False, None
        try:
            self.record_gang(group, plan.attempt)
            view = self.recorder.view
            supervisor = Supervisor(group, self.sink, self.recorder.handle, self.stop, self.cfg.failure,
                                    warn=lambda m: view.message(m, style="yellow"), dump_dir=self.hang_dumps)
            transport = self.transport(group)
            if resume is not None and not transport.restore_direct:
                resume = ray.put(resume.read())  # the driver reads it once; every worker maps the object
            args = AttemptArgs(self.cfg, self.shared_data.for_attempt(plan.world_size), plan, resume, self.sink,
                               checkpoint_dir=self.checkpoint_dir if transport.save_direct else None, heal=heal,
                               verdicts=self.verdicts)
            outcome = supervisor.watch(group.run(args))
            keep = may_heal(outcome, self.cfg.failure.recovery, group.size)
        finally:
            if not keep:
                self.release(group, outcome)
        supervisor.drain_sink()  # everything rank 0 sent: curves, events and checkpoints up to the end
        return dataclasses.replace(outcome, gang_kept=keep)

    def heal(self, group: WorkerGroup, failure: Failure) -> Union[HealPlan, str]:
        """After a lost worker: ask every rank what it holds, replace the dead ones (spares first) and
        re-form the process group. A HealPlan for the next attempt, or why not (the gang is then released:
        the controller restarts from disk)."""
        t0 = time.perf_counter()
        try:
            if failure.kind == Kind.PREEMPTED and failure.rank is not None:
                # It left after the checkpoint, but its open connections would keep the survivors
                # waiting in their next collective: end it (its machine is going anyway).
                release([group.actors[failure.rank]], None)
            decision = plan_heal(held_states(group), group.size, self.cfg.failure.recovery)
            if isinstance(decision, HealPlan):
                filled = group.replace(decision.replaced, self.cfg.failure.restart_wait_s)
                group.join({})
                self.last_heal = {"replaced_by": {str(rank): how for rank, how in filled.items()},  # as in JSON
                                  "heal_setup_s": time.perf_counter() - t0}
                return decision
        except HEAL_ERRORS as err:
            decision = f"re-forming the gang failed ({type(err).__name__}: {first_line(str(err))[:300]})"
        group.shutdown()
        return decision

    def release(self, group: WorkerGroup, outcome: Optional[Outcome]) -> None:
        """Shut the gang down, or hand it back to the search's pool after a clean finish (every rank's
        run returned). The time is the end of this run's gang use (a search's trial start is measured from it)."""
        self.recorder.log.timing["gang_released_unix"] = time.time()
        if self.pool is None:
            group.shutdown()
            return
        clean = outcome is not None and outcome.status is AttemptStatus.FINISHED
        self.pool.give(GangShape.of(self.cfg, group.size), group, finished_cleanly=clean)

    def transport(self, group: WorkerGroup) -> Transport:
        here = ray.get_runtime_context().get_node_id()
        nodes = [info.node_id for info in group.infos]
        transport = decide_transport(self.cfg.checkpoint.transport, self.cfg.checkpoint.dir is not None,
                                     rank0_on_driver_node=nodes[0] == here,
                                     all_on_driver_node=all(node == here for node in nodes))
        self.recorder.log.info["checkpoint_transport"] = {"save": "direct" if transport.save_direct else "driver",
                                                          "restore": "direct" if transport.restore_direct else "driver"}
        return transport

    def record_gang(self, group: WorkerGroup, attempt: int) -> None:
        log = self.recorder.log
        log.info["workers"] = [
            {"rank": rank, "node_id": info.node_id, "node_ip": info.node_ip, "pid": info.pid, "gpus": info.gpu_ids}
            for rank, info in enumerate(group.infos)]
        log.info["world_size"] = group.size
        log.info["spare_workers"] = len(group.spares)
        if attempt == 0:
            log.timing.update(group.timings)
            self.recorder.tb.scalars(0, {f"startup/{key}": value for key, value in log.timing.items()
                                         if key.endswith("_s")}, replayable=False)


# Replacing a worker or re-forming the group can fail like this: the heal falls back to disk.
HEAL_ERRORS = (WorkerStartTimeout, RendezvousTimeout, RayActorError, RayTaskError, GetTimeoutError)
# How long survivors get to see their failed collective (it reaches every rank in about a second: a rank
# that raised shuts its gloo connections down, worker/group_sockets.py). A rank still inside its attempt
# past this is stuck; it holds the same state as the others, so it is replaced like the dead.
HELD_TIMEOUT_S = 5.0


def may_heal(outcome: Outcome, recovery: str, size: int) -> bool:
    """Keep the gang for a heal: a failed attempt whose cause may be a lost worker (a dead process, or
    its peers' failed collectives when Ray has not reported the death yet). ``heal`` then asks who holds what."""
    failure = outcome.failure
    if outcome.status is not AttemptStatus.FAILED or failure is None or recovery != "peer" or size < 2:
        return False
    return (failure.kind in (Kind.WORKER_DIED, Kind.PREEMPTED)
            or (failure.kind == Kind.EXCEPTION and is_collective_error(failure)))


def held_states(group: WorkerGroup, timeout_s: float = HELD_TIMEOUT_S) -> Dict[int, Held]:
    """What each rank still holds, once none is still inside its failed attempt (a survivor's failed
    collective can take a moment to raise); a dead, unresponsive or still busy worker holds nothing."""
    deadline = time.monotonic() + timeout_s
    while True:
        held = ask_held(group, max(0.1, deadline - time.monotonic()))
        if not any(h.busy for h in held.values()) or time.monotonic() > deadline:
            return {rank: Held(step=None) if h.busy else h for rank, h in held.items()}
        time.sleep(0.05)


def ask_held(group: WorkerGroup, timeout_s: float) -> Dict[int, Held]:
    refs = [actor.held_state.remote() for actor in group.actors]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    held: Dict[int, Held] = {}
    for rank, ref in enumerate(refs):
        try:
            held[rank] = ray.get(ref) if ref in ready else Held(step=None)
        except (RayActorError, RayTaskError):
            held[rank] = Held(step=None)
    return held


def start_run_sink(store: CheckpointStore):
    """The run's sink, pinned to this (the driver's) node: it writes the run dir's checkpoints."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from orchestrator.driver.run_sink import RunSink

    here = ray.get_runtime_context().get_node_id()
    return ray.remote(RunSink).options(
        # One call at a time: calls from rank 0 then run in the order it sent them.
        num_cpus=0, max_concurrency=1, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
    ).remote(str(store.directory), store.cfg)
