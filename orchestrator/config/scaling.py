"""How many workers and what each needs (``scaling``), and how failures are survived (``failure``),
grouped the way Ray Train groups its ScalingConfig and FailureConfig."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from orchestrator.config.errors import require, require_choice

STRATEGIES = {"PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"}


@dataclass
class ScalingConfig:
    num_workers: int = 2
    # Elastic training: continue with as few as min_workers when the cluster shrank
    # (null: always wait for num_workers).
    min_workers: Optional[int] = None
    # A fraction below 1 packs several small workers per core (tests, world-size sweeps on one machine).
    cpus_per_worker: float = 1
    gpus_per_worker: int = 0
    placement_strategy: str = "PACK"
    # Bounds on starting a gang, in seconds (null: derived from the gang size and from what must be
    # shipped to the nodes; the formulas and why are in orchestrator/policy/start_bounds.py).
    # Fail if the cluster cannot hold the gang within this long (null: 30 + 0.1 per worker).
    placement_timeout_s: Optional[float] = None
    # Every worker process started and answering (null: 120 + 1 per worker, +60 when files are
    # shipped to a cluster, +600 when cluster.pip must install).
    actor_start_timeout_s: Optional[float] = None
    # Every rank joined the process group (null: 120 + 0.5 per worker; never longer than
    # failure.collective_timeout_s, torch's own bound on the join).
    rendezvous_timeout_s: Optional[float] = None

    def __post_init__(self):
        require(self.num_workers >= 1, "scaling.num_workers", "must be >= 1", self.num_workers)
        require(self.min_workers is None or 1 <= self.min_workers <= self.num_workers, "scaling.min_workers",
                f"must be null or in [1, scaling.num_workers={self.num_workers}]", self.min_workers)
        # Ray's rule: a fraction only below 1, whole numbers above.
        require(0 < self.cpus_per_worker < 1 or float(self.cpus_per_worker).is_integer() and self.cpus_per_worker >= 1,
                "scaling.cpus_per_worker", "must be a fraction in (0, 1) or a whole number >= 1", self.cpus_per_worker)
        # DDP runs one process per device: a worker has no GPU or exactly one (NCCL refuses two ranks on
        # one GPU, and a second GPU in a worker would sit idle).
        require(self.gpus_per_worker in (0, 1), "scaling.gpus_per_worker", "must be 0 or 1", self.gpus_per_worker)
        require_choice("scaling.placement_strategy", self.placement_strategy, STRATEGIES)
        for key in ("placement_timeout_s", "actor_start_timeout_s", "rendezvous_timeout_s"):
            value = getattr(self, key)
            require(value is None or value > 0, f"scaling.{key}", "must be > 0 or null (derived)", value)


@dataclass
class FailureConfig:
    # Restarts allowed (worker death, lost node, hang) before the run fails.
    max_failures: int = 3
    # No step progress on any rank for this long counts as a hang (much shorter than
    # collective_timeout_s, which is torch.distributed's own last resort).
    hang_timeout_s: float = 120.0
    # A long phase without per-step progress (data and model build, checkpoint restore, first step,
    # checkpoint write) may take this long before it counts as a hang (its heartbeat is kept alive).
    phase_timeout_s: float = 1800.0
    collective_timeout_s: float = 600.0
    # With fewer workers (scaling.min_workers), keep the global batch by accumulating more
    # micro-batches, or keep the per-step batch and scale the LR linearly.
    elastic_batch: str = "keep_global_batch"
    # After a failure, wait this long for the full gang's capacity before shrinking or failing.
    restart_wait_s: float = 30.0
    # On Ctrl-C/SIGTERM, how long the workers get to stop at a step boundary and checkpoint.
    graceful_stop_s: float = 60.0
    # After a worker dies: "peer" heals the gang from a surviving rank's memory (the survivors keep their
    # processes and state, one replacement joins, at most the step in flight is lost), falling back to
    # the newest checkpoint when it cannot; "disk" always restarts the whole gang from the checkpoint.
    recovery: str = "peer"
    # Your own failure policy: {_target_: my_project.policies.Policy, ...}, a class with
    # decide(failure, history) -> Decision (see orchestrator/policy/failure.py); it may name max_failures.
    # Empty: restart up to max_failures times, and raise when the same exception comes back.
    policy: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        require(self.max_failures >= 0, "failure.max_failures", "must be >= 0", self.max_failures)
        require(self.hang_timeout_s > 0, "failure.hang_timeout_s", "must be > 0", self.hang_timeout_s)
        require(self.phase_timeout_s > 0, "failure.phase_timeout_s", "must be > 0", self.phase_timeout_s)
        require(self.collective_timeout_s > 0, "failure.collective_timeout_s", "must be > 0",
                self.collective_timeout_s)
        require_choice("failure.elastic_batch", self.elastic_batch, {"keep_global_batch", "scale_lr"})
        require(self.restart_wait_s >= 0, "failure.restart_wait_s", "must be >= 0", self.restart_wait_s)
        require_choice("failure.recovery", self.recovery, {"peer", "disk"})
        require(self.graceful_stop_s > 0, "failure.graceful_stop_s", "must be > 0", self.graceful_stop_s)


@dataclass
class FaultToleranceConfig:
    """Deprecated: the ``failure`` section. Keys set here still work for one release, with a warning."""
    hang_timeout_s: Optional[float] = None
    phase_timeout_s: Optional[float] = None
    collective_timeout_s: Optional[float] = None
    elastic_batch: Optional[str] = None
    restart_wait_s: Optional[float] = None
    graceful_stop_s: Optional[float] = None


# Old key -> new key. Each old key defaults to null; a value set there moves to the new key.
DEPRECATED = {
    "trainer.num_workers": "scaling.num_workers",
    "trainer.min_workers": "scaling.min_workers",
    "trainer.max_failures": "failure.max_failures",
    "cluster.cpus_per_worker": "scaling.cpus_per_worker",
    "cluster.gpus_per_worker": "scaling.gpus_per_worker",
    "cluster.placement_strategy": "scaling.placement_strategy",
    "cluster.placement_timeout_s": "scaling.placement_timeout_s",
    **{f"fault_tolerance.{key}": f"failure.{key}" for key in FaultToleranceConfig.__dataclass_fields__},
}


def move_deprecated_keys(cfg) -> None:
    """Old keys keep working for one release: their value moves to the new key, with a warning."""
    import warnings

    touched = set()
    for old, new in DEPRECATED.items():
        old_section, old_key = old.split(".")
        value = getattr(getattr(cfg, old_section), old_key)
        if value is None:
            continue
        warnings.warn(f"{old} is deprecated: use {new} (the value is used for {new} in this run)", FutureWarning,
                      stacklevel=3)
        new_section, new_key = new.split(".")
        setattr(getattr(cfg, new_section), new_key, value)
        setattr(getattr(cfg, old_section), old_key, None)
        touched.add(new_section)
    for section in touched:
        getattr(cfg, section).__post_init__()  # the moved values are checked like any other
