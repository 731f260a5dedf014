"""What one attempt of a run looks like: gang size and how the batch is kept (pure, no Ray)."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator import config as C


@dataclass(frozen=True)
class AttemptPlan:
    attempt: int            # 0 for the first start, +1 per restart
    world_size: int
    accumulate: int         # micro-batches per optimizer step on each rank
    lr_scale: float = 1.0   # applied on top of the schedule (elastic scale_lr)


def plan_attempt(cfg: C.Config, attempt: int, world_size: int) -> AttemptPlan:
    """Full-size gangs run as configured. A smaller (elastic) gang either accumulates more
    micro-batches to keep the global batch, or keeps its batch and scales the LR linearly."""
    full = cfg.trainer.num_workers
    accumulate = cfg.trainer.accumulate_grad_batches
    if world_size == full:
        return AttemptPlan(attempt, world_size, accumulate)
    if cfg.fault_tolerance.elastic_batch == "keep_global_batch":
        total = full * accumulate
        if total % world_size == 0:
            return AttemptPlan(attempt, world_size, total // world_size)
        # Not divisible: keep the nearest smaller global batch and scale the LR for the rest.
        new_accumulate = max(1, total // world_size)
        return AttemptPlan(attempt, world_size, new_accumulate, world_size * new_accumulate / total)
    return AttemptPlan(attempt, world_size, accumulate, world_size / full)


def elastic_sizes(cfg: C.Config) -> range:
    """Gang sizes to try, largest first."""
    low = cfg.trainer.min_workers or cfg.trainer.num_workers
    return range(cfg.trainer.num_workers, low - 1, -1)
