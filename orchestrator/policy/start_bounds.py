"""How long each phase of starting a gang may take (pure, no Ray): placement, actor start, rendezvous.

An explicit ``scaling.*_timeout_s`` always wins; null derives the bound from the gang size and from what
Ray must bring to the nodes first (nothing, our files, or a pip install).

Why these numbers (the bounds are fail-safes: too short kills a healthy start, too long only delays
the error a broken one deserves, so each errs on the long side):

* Placement (``scaling.placement_timeout_s``): 30 s + 0.1 s per worker. Waiting for a placement group is
  waiting for the cluster to *have* the resources; Ray's GCS reserves all bundles in one two-phase commit
  across the nodes: 256 bundles were ready in 0.085 s on one node here (scripts/start_bounds.py,
  scripts/results/2026-12-01/start_bounds.md), so the size term is small. Ray Train v2 waits a flat 60 s for
  the same thing (RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S, ray/train/v2/_internal/constants.py); 30 s was
  ours, and stays the bound of a small gang. Clusters that must first scale up want an explicit, longer
  value.
* Actor start (``scaling.actor_start_timeout_s``): 120 s + 1 s per worker, plus the shipping. Each worker is
  a new process that imports torch (seconds on a busy node). A raylet starts at most min(cores, CPUs) worker
  processes at once (``maximum_startup_concurrency``, ray/_private/services.py), so ranks that share a node
  start in waves: linear in the ranks per node, which we do not know before placement, hence linear in the
  world size (measured here: 2 s for 1 worker, 13 s for 16 sharing 2 busy cores, about 0.75 s per extra
  worker; a start far from 120 s). Shipped files (``cluster.working_dir``/``py_modules``, and our own
  packages when joining a cluster) are downloaded and unpacked once per node before its first worker starts:
  +60 s. A pip install (``cluster.pip``) builds a virtualenv per node: +600 s, Ray's own runtime-env setup
  bound (RuntimeEnvConfig.setup_timeout_seconds defaults to 600), so we never give up on an install Ray
  itself still allows.
* Rendezvous (``scaling.rendezvous_timeout_s``): 120 s + 0.5 s per worker. Every rank connects to rank 0's
  TCP store; with gloo each rank then connects to every other rank through addresses exchanged in that store
  (N-1 pairs per rank, N^2 store operations on one server), NCCL bootstraps through it too: linear per rank
  (under 1 s for 16 gloo ranks here). torchrun waits far longer by default (the c10d rendezvous join_timeout
  is 600 s, torch/distributed/elastic/rendezvous/dynamic_rendezvous.py; LaunchConfig's legacy rdzv_timeout
  900 s, torch/distributed/launcher/api.py) because its wait also covers nodes that are still booting, which
  for us is the placement's job. The rendezvous also never waits longer than
  ``failure.collective_timeout_s``: that is torch.distributed's own timeout for init_process_group, which
  would fail the join first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from orchestrator import config as C

NOTHING, FILES, PIP = "nothing", "files", "pip"   # what Ray must bring to a node before a worker starts

PLACEMENT_BASE_S, PLACEMENT_PER_WORKER_S = 30.0, 0.1
ACTOR_START_BASE_S, ACTOR_START_PER_WORKER_S = 120.0, 1.0
SHIPPING_EXTRA_S = {NOTHING: 0.0, FILES: 60.0, PIP: 600.0}
RENDEZVOUS_BASE_S, RENDEZVOUS_PER_WORKER_S = 120.0, 0.5


@dataclass(frozen=True)
class Bound:
    """One phase's bound, and enough about where it came from to say which key to raise."""
    seconds: float
    key: str              # the config key that sets it
    derived: str = ""     # how it was derived ("" when the key was set)

    def describe(self) -> str:
        origin = f"derived from {self.derived}; " if self.derived else ""
        return f"{self.seconds:g}s ({origin}raise {self.key} to wait longer)"


@dataclass(frozen=True)
class StartBounds:
    placement: Bound
    actor_start: Bound
    rendezvous: Bound


def shipping(cluster: C.ClusterConfig) -> str:
    """What a node must get before a worker starts; mirrors driver/cluster.py's runtime_env (a local Ray
    ships nothing: the workers run from this machine's own files)."""
    if cluster.address is None:
        return NOTHING
    if cluster.pip:
        return PIP
    return FILES if cluster.ship_code or cluster.working_dir or cluster.py_modules else NOTHING


def placement_s(world_size: int) -> float:
    return PLACEMENT_BASE_S + PLACEMENT_PER_WORKER_S * world_size


def actor_start_s(world_size: int, ships: str) -> float:
    return ACTOR_START_BASE_S + ACTOR_START_PER_WORKER_S * world_size + SHIPPING_EXTRA_S[ships]


def rendezvous_s(world_size: int) -> float:
    return RENDEZVOUS_BASE_S + RENDEZVOUS_PER_WORKER_S * world_size


def start_bounds(scaling: C.ScalingConfig, cluster: C.ClusterConfig, world_size: int,
                 collective_timeout_s: float) -> StartBounds:
    """The bounds for starting a gang of ``world_size``: the configured ones, the others derived."""
    ships = shipping(cluster)
    gang = f"{world_size} workers"
    rendezvous = choose("scaling.rendezvous_timeout_s", scaling.rendezvous_timeout_s, rendezvous_s(world_size), gang)
    if collective_timeout_s < rendezvous.seconds:  # torch's own init_process_group timeout fires first
        rendezvous = Bound(collective_timeout_s, "failure.collective_timeout_s")
    return StartBounds(
        placement=choose("scaling.placement_timeout_s", scaling.placement_timeout_s, placement_s(world_size), gang),
        actor_start=choose("scaling.actor_start_timeout_s", scaling.actor_start_timeout_s,
                           actor_start_s(world_size, ships), f"{gang}, shipping {ships}"),
        rendezvous=rendezvous)


def choose(key: str, configured: Optional[float], derived: float, how: str) -> Bound:
    return Bound(configured, key) if configured is not None else Bound(derived, key, how)
