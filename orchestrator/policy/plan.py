"""What one attempt of a run looks like: which gang to ask for, and how it keeps the batch (pure, no Ray).

The controller takes any ``ScalingPolicy``; ``ElasticPolicy`` (scaling.num_workers, scaling.min_workers,
failure.elastic_batch and the waits) is the default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Protocol

from orchestrator import config as C
from orchestrator.policy.start_bounds import Bound, placement_s


@dataclass(frozen=True)
class AttemptPlan:
    attempt: int            # 0 for the first start, +1 per restart
    world_size: int
    accumulate: int         # micro-batches per optimizer step on each rank
    lr_scale: float = 1.0   # applied on top of the schedule (elastic scale_lr)


@dataclass(frozen=True)
class GangRequest:
    """Ask for a gang of this size, waiting at most this long for the cluster to hold it."""
    world_size: int
    placement_timeout_s: float
    # Where the bound came from, for the error that says which key to raise (not part of the request).
    placement_key: str = field(default="scaling.placement_timeout_s", compare=False)
    derived: str = field(default="", compare=False)   # how it was derived ("" when set)

    def placement_bound(self) -> Bound:
        return Bound(self.placement_timeout_s, self.placement_key, self.derived)


class ScalingPolicy(Protocol):
    num_workers: int  # the configured (full) gang size

    def gang_requests(self, attempt: int) -> List[GangRequest]:
        """Gangs to try for this attempt, in order; the first that fits is used."""

    def plan(self, attempt: int, world_size: int) -> AttemptPlan:
        """How a gang of ``world_size`` runs this attempt."""


@dataclass(frozen=True)
class ElasticPolicy:
    num_workers: int
    min_workers: Optional[int]   # None: not elastic, always the full gang
    accumulate: int              # trainer.accumulate_grad_batches
    elastic_batch: str           # keep_global_batch | scale_lr
    restart_wait_s: float        # after a failure: how long to wait for the full gang
    placement_timeout_s: Optional[float]   # any other gang (None: derived from its size)

    @classmethod
    def from_config(cls, cfg: C.Config) -> "ElasticPolicy":
        s, f = cfg.scaling, cfg.failure
        return cls(s.num_workers, s.min_workers, cfg.trainer.accumulate_grad_batches, f.elastic_batch,
                   f.restart_wait_s, s.placement_timeout_s)

    def sizes(self) -> range:
        """Gang sizes to try after a failure, largest first."""
        low = self.min_workers or self.num_workers
        return range(self.num_workers, low - 1, -1)

    def gang_requests(self, attempt: int) -> List[GangRequest]:
        """First start: the full gang within scaling.placement_timeout_s. After a failure: wait up to
        failure.restart_wait_s for the full gang, then (elastic, scaling.min_workers) the
        largest gang that fits, each within scaling.placement_timeout_s (null: derived per size)."""
        if attempt == 0:
            return [self.placed_within_timeout(self.num_workers)]
        return [GangRequest(size, max(self.restart_wait_s, 1.0), "failure.restart_wait_s")
                if size == self.num_workers else self.placed_within_timeout(size) for size in self.sizes()]

    def placed_within_timeout(self, size: int) -> GangRequest:
        if self.placement_timeout_s is not None:
            return GangRequest(size, self.placement_timeout_s)
        return GangRequest(size, placement_s(size), derived=f"{size} workers")

    def plan(self, attempt: int, world_size: int) -> AttemptPlan:
        """Full-size gangs run as configured. A smaller (elastic) gang either accumulates more
        micro-batches to keep the global batch, or keeps its batch and scales the LR linearly."""
        full, accumulate = self.num_workers, self.accumulate
        if world_size == full:
            return AttemptPlan(attempt, world_size, accumulate)
        if self.elastic_batch == "keep_global_batch":
            total = full * accumulate
            if total % world_size == 0:
                return AttemptPlan(attempt, world_size, total // world_size)
            # Not divisible: keep the nearest smaller global batch and scale the LR for the rest.
            new_accumulate = max(1, total // world_size)
            return AttemptPlan(attempt, world_size, new_accumulate, world_size * new_accumulate / total)
        return AttemptPlan(attempt, world_size, accumulate, world_size / full)


def plan_attempt(cfg: C.Config, attempt: int, world_size: int) -> AttemptPlan:
    return ElasticPolicy.from_config(cfg).plan(attempt, world_size)


def elastic_sizes(cfg: C.Config) -> range:
    """Gang sizes to try, largest first."""
    return ElasticPolicy.from_config(cfg).sizes()
