"""A gang of worker actors: one placement group, deterministic ranks, one rendezvous.

Every wait here has a bound and a named error: placement (the cluster cannot
hold the gang), actor start, and the process-group rendezvous. The bounds come from
``scaling.*_timeout_s`` or are derived from the gang size (orchestrator/policy/start_bounds.py).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from orchestrator import config as C
from orchestrator.attempt import Rendezvous
from orchestrator.policy.start_bounds import Bound, StartBounds, start_bounds

if TYPE_CHECKING:
    from orchestrator.attempt import AttemptArgs
    from orchestrator.worker.actor import WorkerInfo


class PlacementTimeout(RuntimeError):
    """The cluster could not hold the requested gang within the configured bound."""


class WorkerStartTimeout(RuntimeError):
    pass


class RendezvousTimeout(RuntimeError):
    pass


# Served concurrently with `run`: poll, request_stop, stacks.
WORKER_CONCURRENCY = 4


def bundle_for(cfg: C.ScalingConfig) -> Dict[str, float]:
    bundle = {"CPU": float(cfg.cpus_per_worker)}
    if cfg.gpus_per_worker:
        bundle["GPU"] = float(cfg.gpus_per_worker)
    return bundle


def rank_order(infos: Sequence[WorkerInfo]) -> List[int]:
    """Indices of ``infos`` in rank order: by node, then GPU, then creation order (deterministic)."""
    return sorted(range(len(infos)),
                  key=lambda i: (infos[i].node_ip, infos[i].node_id,
                                 min((gpu_sort_key(g) for g in infos[i].gpu_ids), default=(-1, 0, "")),
                                 infos[i].index))


def shared_cuda_devices(infos: Sequence[WorkerInfo], use_gpus: bool = True) -> List[Optional[str]]:
    """Per worker: the GPUs of all gang workers on its node (CUDA_VISIBLE_DEVICES), or None for a
    worker that trains on the CPU (no GPU, or trainer.device=cpu)."""
    per_node: Dict[str, set] = defaultdict(set)
    for info in infos:
        per_node[info.node_id].update(info.gpu_ids)
    return [",".join(sorted(per_node[info.node_id], key=gpu_sort_key)) if info.gpu_ids and use_gpus else None
            for info in infos]


def gpu_sort_key(gpu_id: str):
    """Numeric ids in numeric order; UUID-style ids (MIG) after them, as text."""
    return (0, int(gpu_id), "") if gpu_id.isdigit() else (1, 0, gpu_id)


def describe_cluster() -> str:
    lines = []
    available = ray.available_resources()
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        total = node.get("Resources", {})
        lines.append(f"  node {node['NodeManagerAddress']} ({node['NodeID'][:8]}): "
                     + ", ".join(f"{k} {v:g}" for k, v in sorted(total.items()) if k in ("CPU", "GPU")))
    lines.append("  free now: " + ", ".join(f"{k} {available.get(k, 0):g}" for k in ("CPU", "GPU")))
    return "\n".join(lines)


@dataclass(frozen=True)
class GroupSettings:
    """What starting one more worker and re-forming the process group need (after a heal)."""
    scaling: C.ScalingConfig
    bounds: StartBounds
    collective_timeout_s: float
    use_gpus: bool = True
    gloo_ifname: Optional[str] = None


@dataclass
class Spare:
    """A started worker outside the process group (trainer.spare_workers), in its own bundle."""
    actor: Any
    bundle: int
    describe: Any  # its describe() reference: ready once the process has started and imported torch


@dataclass
class WorkerGroup:
    actors: List[Any]
    infos: List[WorkerInfo]              # in rank order
    pg: Any
    timings: Dict[str, float] = field(default_factory=dict)
    bundles: List[int] = field(default_factory=list)   # each rank's placement-group bundle
    spares: List[Spare] = field(default_factory=list)
    settings: Optional[GroupSettings] = None

    @property
    def size(self) -> int:
        return len(self.actors)

    @classmethod
    def start(cls, scaling: C.ScalingConfig, cluster: C.ClusterConfig, size: int, collective_timeout_s: float,
              use_gpus: bool = True, bounds: Optional[StartBounds] = None, spares: int = 0) -> "WorkerGroup":
        """Only the scaling and cluster sections: how many workers, what each needs, where the network is.
        ``bounds``: how long each phase may take (None: from the config, derived where it says null).
        ``spares``: extra workers started in bundles of their own, not waited for."""
        bounds = bounds or start_bounds(scaling, cluster, size, collective_timeout_s)
        settings = GroupSettings(scaling, bounds, collective_timeout_s, use_gpus, cluster.gloo_socket_ifname)
        timings: Dict[str, float] = {}
        pg = reserve(scaling, size, bounds.placement, timings, spares)
        everyone: List[Any] = []
        try:
            everyone = create_actors(scaling, pg, range(size + spares))
            actors = everyone[:size]
            standby = [Spare(a, size + i, a.warm.remote()) for i, a in enumerate(everyone[size:])]
            infos = wait_for_actors(actors, bounds.actor_start, timings)
            order = rank_order(infos)
            actors, infos = [actors[i] for i in order], [infos[i] for i in order]
            group = cls(actors, infos, pg, timings, bundles=list(order), spares=standby, settings=settings)
            group.join(timings)
        except BaseException:
            release(everyone, pg)  # teardown in one place, also after a failed start
            raise
        return group

    def join(self, timings: Dict[str, float]) -> None:
        """Every rank joins a (new) process group hosted by rank 0."""
        s = self.settings
        rendezvous(self.actors, self.infos, s.collective_timeout_s, s.bounds, timings, use_gpus=s.use_gpus,
                   gloo_ifname=s.gloo_ifname)

    def run(self, attempt: AttemptArgs) -> List[ray.ObjectRef]:
        """Start ``Worker.run`` on every rank; one reference per rank, in rank order."""
        return [actor.run.remote(attempt) for actor in self.actors]

    def replace(self, ranks: Sequence[int], capacity_wait_s: float) -> Dict[int, str]:
        """A new worker in each of ``ranks`` (whose processes died): a spare (a ready one first; one still
        starting is ahead of a new process anyway), else a new actor in the dead one's bundle. A used
        spare's place is refilled in that bundle.
        Returns how each rank was filled ("spare" or "new"). Raises WorkerStartTimeout, after
        ``capacity_wait_s`` when the bundle went with its node and Ray has found no room for it."""
        how: Dict[int, str] = {}
        refs = {}
        for rank in ranks:
            release([self.actors[rank]], None)
            freed, spare = self.bundles[rank], self.next_spare()
            if spare is not None:
                self.spares.remove(spare)
                self.actors[rank], self.bundles[rank], refs[rank] = spare.actor, spare.bundle, spare.describe
                (actor,) = create_actors(self.settings.scaling, self.pg, [freed])
                self.spares.append(Spare(actor, freed, actor.warm.remote()))
                how[rank] = "spare"
            else:
                (self.actors[rank],) = create_actors(self.settings.scaling, self.pg, [freed])
                refs[rank] = self.actors[rank].describe.remote()
                how[rank] = "new"
        pending = list(refs.values())
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=capacity_wait_s)
        if pending and placement_state(self.pg) != "CREATED":
            raise WorkerStartTimeout(f"no room for a replacement worker within {capacity_wait_s:g}s "
                                     f"(failure.restart_wait_s): a bundle of the gang was lost with its node")
        infos = wait_for_actors([self.actors[rank] for rank in refs], self.settings.bounds.actor_start, {},
                                refs=list(refs.values()))
        for rank, info in zip(refs, infos):
            self.infos[rank] = info
        return how

    def next_spare(self) -> Optional[Spare]:
        """A spare whose process is up, else the one started first (None without spares)."""
        if not self.spares:
            return None
        ready, _ = ray.wait([s.describe for s in self.spares], num_returns=len(self.spares), timeout=0)
        return next((s for s in self.spares if s.describe in ready), self.spares[0])

    def shutdown(self) -> None:
        release(self.actors + [s.actor for s in self.spares], self.pg)


def placement_state(pg) -> str:
    """PENDING, CREATED, REMOVED or RESCHEDULING (a bundle's node was lost)."""
    try:
        return ray.util.placement_group_table(pg).get("state", "")
    except Exception:  # noqa: BLE001 - unknown is "not known to be placed"
        return ""


def reserve(scaling: C.ScalingConfig, size: int, bound: Bound, timings: Dict[str, float], spares: int = 0):
    """One bundle per worker and per spare, all at once."""
    t0 = time.perf_counter()
    bundle = bundle_for(scaling)
    pg = placement_group([dict(bundle) for _ in range(size + spares)], strategy=scaling.placement_strategy)
    ready, _ = ray.wait([pg.ready()], timeout=bound.seconds)
    if not ready:
        remove_placement_group(pg)
        raise PlacementTimeout(
            f"the cluster cannot hold the gang: asked for {size} workers"
            f"{f' + {spares} spares (trainer.spare_workers)' if spares else ''} x {bundle} "
            f"(strategy {scaling.placement_strategy}), waited {bound.describe()}."
            f"\nThe cluster has:\n{describe_cluster()}")
    timings["placement_s"] = time.perf_counter() - t0
    return pg


def create_actors(scaling: C.ScalingConfig, pg, bundles: Sequence[int]) -> List[Any]:
    """One worker actor in each of the placement group's ``bundles`` (its index: the bundle's)."""
    from orchestrator.worker.actor import Worker  # imports torch; the driver loads it while Ray starts

    remote_worker = ray.remote(Worker)
    return [
        remote_worker.options(
            num_cpus=scaling.cpus_per_worker,
            num_gpus=scaling.gpus_per_worker,
            max_concurrency=WORKER_CONCURRENCY,
            scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i),
        ).remote(i, scaling.cpus_per_worker)
        for i in bundles
    ]


def wait_for_actors(actors: List[Any], bound: Bound, timings: Dict[str, float],
                    refs: Optional[List[Any]] = None) -> List[WorkerInfo]:
    t0 = time.perf_counter()
    refs = refs if refs is not None else [a.describe.remote() for a in actors]
    ready, pending = ray.wait(refs, num_returns=len(refs), timeout=bound.seconds)
    if pending:
        raise WorkerStartTimeout(
            f"{len(pending)} of {len(actors)} workers did not start within {bound.describe()}; still starting: "
            f"worker(s) {which(refs, pending)}. Their resources are reserved, so the process start, the torch "
            f"import or the runtime_env (cluster.working_dir, py_modules, pip) is slow or failing on their "
            f"node.\nThe cluster has:\n{describe_cluster()}")
    infos = ray.get(refs)
    timings["actor_start_s"] = time.perf_counter() - t0
    return infos


def rendezvous(actors: List[Any], infos: List[WorkerInfo], timeout_s: float, bounds: StartBounds,
               timings: Dict[str, float], use_gpus: bool = True, gloo_ifname: Optional[str] = None) -> None:
    """Rank 0 hosts the TCP store; ``timeout_s`` is also torch.distributed's collective timeout.
    ``gloo_ifname``: cluster.gloo_socket_ifname (null: each worker picks the interface of its node IP)."""
    t0 = time.perf_counter()
    master_addr = infos[0].node_ip
    master_port = ray.get(actors[0].free_port.remote(master_addr), timeout=bounds.actor_start.seconds)
    devices = shared_cuda_devices(infos, use_gpus)
    refs = [a.join.remote(Rendezvous(rank, len(actors), master_addr, master_port, timeout_s, devices[rank], gloo_ifname))
            for rank, a in enumerate(actors)]
    ready, pending = ray.wait(refs, num_returns=len(refs), timeout=bounds.rendezvous.seconds)
    if pending:
        raise RendezvousTimeout(
            f"{len(pending)} of {len(actors)} workers did not join the process group at {master_addr}:{master_port} "
            f"within {bounds.rendezvous.describe()}; not joined: rank(s) {which(refs, pending)} (can they reach "
            f"{master_addr}:{master_port}? cluster.gloo_socket_ifname picks the interface)")
    ray.get(refs)  # surfaces a join error (e.g. NCCL missing)
    timings["process_group_s"] = time.perf_counter() - t0


def which(refs: List[Any], pending: List[Any], shown: int = 16) -> str:
    """The positions of the pending refs, the first ``shown`` of them (a message must stay short at 256)."""
    waiting = set(pending)
    indices = [i for i, ref in enumerate(refs) if ref in waiting]
    more = f" and {len(indices) - shown} more" if len(indices) > shown else ""
    return ", ".join(map(str, indices[:shown])) + more


def release(actors: List[Any], pg) -> None:
    for actor in actors:
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # already dead
            pass
    if pg is not None:
        try:
            remove_placement_group(pg)
        except Exception:
            pass
