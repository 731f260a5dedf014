"""Warm gangs: trials of a search (or jobs of a Hydra multirun) hand a finished gang back to a pool
instead of tearing it down, and the next trial of the same shape takes it. ``Worker.run`` builds the
model, optimizer, data shard, sink and reporter afresh on every call, so a warm gang skips only what
does not depend on the trial: placing the placement group, starting the processes (importing torch)
and the process-group rendezvous.

Only a gang whose attempt FINISHED (every rank's ``run`` returned) comes back; a failed, hung or
force-stopped gang is always torn down. The decisions (which idle gang fits a request, which to let go)
are pure functions of ``GangShape``s, table-tested; ``GangPool`` carries them out under a lock, since
concurrent trials run on threads of their own.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, List, Optional, Sequence, Tuple

from orchestrator import config as C

if TYPE_CHECKING:
    from orchestrator.driver.worker_group import WorkerGroup

ALIVE_TIMEOUT_S = 5.0  # an idle gang's workers must answer a poll this fast to be reused


@dataclass(frozen=True)
class GangShape:
    """Everything a gang was started with: two gangs of equal shape are interchangeable."""
    size: int
    cpus_per_worker: float
    gpus_per_worker: int
    placement_strategy: str
    use_gpus: bool               # trainer.device != cpu: decides CUDA_VISIBLE_DEVICES at the join
    collective_timeout_s: float  # torch.distributed's timeout, fixed when the process group is formed
    cluster: str                 # the cluster section (gloo interface, runtime_env), as text
    spares: int = 0              # trainer.spare_workers, where the config has it: a gang's extra actors

    @classmethod
    def of(cls, cfg: C.Config, size: int) -> "GangShape":
        s = cfg.scaling
        return cls(size, float(s.cpus_per_worker), s.gpus_per_worker, s.placement_strategy,
                   cfg.trainer.device != "cpu", float(cfg.failure.collective_timeout_s),
                   repr(dataclasses.asdict(cfg.cluster)), int(getattr(cfg.trainer, "spare_workers", 0) or 0))


# ----------------------------------------------------------------------------- decisions (pure)
def reusable(finished_cleanly: bool, pool_open: bool) -> bool:
    """May a gang go back to the pool when its attempt ended? Only a clean finish, only while the
    search runs (a closed pool shuts it down)."""
    return finished_cleanly and pool_open


def plan_take(idle: Sequence[GangShape], wanted: GangShape) -> Tuple[Optional[int], List[int]]:
    """Which idle gang to reuse (its index, or None) and which idle gangs to shut down first.
    On a miss every idle gang is let go: a gang of another shape holds resources the new gang may
    need, and waiting for it to be wanted again could leave the new one unplaceable."""
    for index, shape in enumerate(idle):
        if shape == wanted:
            return index, []
    return None, list(range(len(idle)))


# ----------------------------------------------------------------------------- carrying them out
@dataclass
class IdleGang:
    shape: GangShape
    group: Any          # WorkerGroup
    since: float        # time.time() when it was handed back


class GangPool:
    def __init__(self, alive_timeout_s: float = ALIVE_TIMEOUT_S):
        self.idle: List[IdleGang] = []
        self.lock = threading.Lock()
        self.open = True
        self.alive_timeout_s = alive_timeout_s
        self.reused = 0      # gangs handed out warm
        self.returned = 0    # gangs handed back

    def take(self, wanted: GangShape) -> Optional["WorkerGroup"]:
        """A warm gang of this shape whose workers answer, or None (then start a new one)."""
        with self.lock:
            index, evict = plan_take([gang.shape for gang in self.idle], wanted)
            chosen = self.idle[index] if index is not None else None
            let_go = [self.idle[i] for i in evict]
            self.idle = [gang for gang in self.idle if gang is not chosen and gang not in let_go]
        for gang in let_go:
            gang.group.shutdown()
        if chosen is None:
            return None
        if not self.answers(chosen.group):
            chosen.group.shutdown()  # a worker died while idle (e.g. out of memory): start a new gang
            return None
        with self.lock:
            self.reused += 1
        return chosen.group

    def give(self, shape: GangShape, group: "WorkerGroup", finished_cleanly: bool) -> bool:
        """Keep the gang for the next trial of its shape, or shut it down. Returns whether it was kept."""
        with self.lock:
            keep = reusable(finished_cleanly, self.open)
            if keep:
                self.idle.append(IdleGang(shape, group, time.time()))
                self.returned += 1
        if not keep:
            group.shutdown()
        return keep

    def close(self) -> None:
        """Shut every idle gang down; gangs handed back later are shut down at once."""
        with self.lock:
            self.open = False
            idle, self.idle = self.idle, []
        for gang in idle:
            gang.group.shutdown()

    def answers(self, group: "WorkerGroup") -> bool:
        import ray

        refs = [actor.poll.remote() for actor in group.actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.alive_timeout_s)
        if len(ready) < len(refs):
            return False
        try:
            ray.get(ready)
        except Exception:  # noqa: BLE001 - any error here means: not reusable
            return False
        return True


@contextmanager
def warm_gangs(enabled: bool) -> Iterator[Optional[GangPool]]:
    """A pool for the length of a search or multirun (None when search.warm_gangs=false); closed at
    the end, also after Ctrl-C or an error, so no idle gang outlives the sweep."""
    pool = GangPool() if enabled else None
    try:
        yield pool
    finally:
        if pool is not None:
            pool.close()
