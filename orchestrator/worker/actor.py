"""The worker: one data-parallel replica. A plain class; Ray makes it an actor at creation
(``ray.remote(Worker)``), as Ray Train v2 does, so it can also be used without Ray.

The training loop runs in ``run`` on one thread; the driver's calls (``poll``,
``request_stop``, ``stacks``) are served on other threads of the same actor,
so watching a worker never blocks its training.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import traceback
import dataclasses
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist

from orchestrator import config as C
from orchestrator.worker import network
from orchestrator.attempt import AttemptArgs, Rendezvous
from orchestrator.policy.failure import TrainingError
from orchestrator.components.schedulers import rebase_lr
from orchestrator.records import Heartbeat, MetricsRecord, Record, StartupInfo
from orchestrator.checkpoint.writer import CheckpointWriter
from orchestrator.worker.reporting import Reporter


@dataclass
class WorkerInfo:
    index: int            # creation order in the gang
    node_id: str
    node_ip: str
    pid: int
    gpu_ids: List[str]    # the GPU ids Ray assigned to this worker (numbers, or UUIDs for MIG)


class RayReporter(Reporter):
    """Rank 0's reporter: records go to the run's RunSink actor, in order, in small batches.

    Metrics are batched (one call about every SEND_INTERVAL_S); an event, an info or a checkpoint
    is sent at once, with every record before it.
    """

    SEND_INTERVAL_S = 0.5
    DELIVERY_TIMEOUT_S = 600.0

    def __init__(self, rank: int, sink, phase_timeout_s: Optional[float] = None):
        super().__init__(rank, keeps_records=True, phase_timeout_s=phase_timeout_s)
        self.sink = sink
        self.pending: List[Record] = []
        self.in_flight: List[Any] = []
        self.last_send = time.monotonic()
        # The training thread and the background checkpoint writer both send: one at a time, in order.
        self.send_lock = threading.RLock()

    def _put(self, record: Record) -> None:
        with self.send_lock:
            self.pending.append(record)
            if not isinstance(record, MetricsRecord) or time.monotonic() - self.last_send > self.SEND_INTERVAL_S:
                self.send()

    def send(self) -> None:
        with self.send_lock:
            self.send_pending()

    def send_pending(self) -> None:
        import ray

        if self.pending:
            # Fire and forget: training goes on while the records (and checkpoint bytes) travel.
            self.in_flight.append(self.sink.push.remote(self.pending))
            self.pending = []
        self.last_send = time.monotonic()
        if len(self.in_flight) > 16:
            done, self.in_flight = ray.wait(self.in_flight, num_returns=len(self.in_flight), timeout=0)
            ray.get(done)  # a failed write (disk full, sink gone) stops the run instead of passing unseen

    def wait_persisted(self) -> None:
        import ray

        self.checkpoints.wait()  # the write in flight, which then sends its record
        with self.send_lock:
            self.send_pending()
            in_flight, self.in_flight = self.in_flight, []
        ray.get(in_flight, timeout=self.DELIVERY_TIMEOUT_S)


class Worker:
    def __init__(self, index: int, cpus: float):
        self.index = index
        self.cpus = cpus
        self.rank: Optional[int] = None
        self.world_size: Optional[int] = None
        self.local_device_index: Optional[int] = None
        self.reporter = Reporter(rank=-1, keeps_records=False)
        self.train_thread: Optional[int] = None
        torch.set_num_threads(max(1, int(cpus)))  # like torchrun's OMP_NUM_THREADS: one worker, its own cores

    # ----------------------------------------------------------------- placement and rendezvous
    def describe(self) -> WorkerInfo:
        import ray

        ctx = ray.get_runtime_context()
        gpu_ids = [str(g) for g in ray.get_gpu_ids()]
        return WorkerInfo(self.index, ctx.get_node_id(), ray.util.get_node_ip_address(), os.getpid(), gpu_ids)

    def free_port(self, host: str = "0.0.0.0") -> int:
        """A free TCP port on this node for the rendezvous (rank 0 hosts it), probed with a socket of
        ``host``'s address family (an IPv6 node address needs an IPv6 port)."""
        family = network.address_family(host)
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind(("::" if family == socket.AF_INET6 else "", 0))
            return s.getsockname()[1]

    def join(self, rendezvous: Rendezvous) -> None:
        """Join the process group: NCCL on a GPU, gloo on the CPU (on the interface of the node IP,
        or ``gloo_ifname`` from cluster.gloo_socket_ifname)."""
        rank, world_size, cuda_visible_devices = rendezvous.rank, rendezvous.world_size, rendezvous.cuda_visible_devices
        self.rank, self.world_size = rank, world_size
        if cuda_visible_devices is not None:
            # Like Ray Train: workers on one node see all of that node's gang GPUs (so NCCL can use
            # peer-to-peer), each using its own. Set before CUDA initialises in this process.
            (own,) = self.describe().gpu_ids  # exactly one (scaling.gpus_per_worker is 0 or 1)
            os.environ["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices
            self.local_device_index = cuda_visible_devices.split(",").index(own)
        backend = "nccl" if self.local_device_index is not None else "gloo"
        if backend == "gloo":
            import psutil
            import ray

            os.environ.update(network.gloo_socket_ifname(ray.util.get_node_ip_address(), os.environ,
                                                         rendezvous.gloo_ifname, psutil.net_if_addrs()))
        url = network.tcp_url(rendezvous.master_addr, rendezvous.master_port)
        dist.init_process_group(backend, init_method=url, rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=rendezvous.timeout_s))

    # ----------------------------------------------------------------- training
    def device(self, cfg: C.Config) -> torch.device:
        if self.local_device_index is not None and cfg.trainer.device in ("auto", "cuda"):
            torch.cuda.set_device(self.local_device_index)  # per thread: call on the training thread
            return torch.device("cuda", self.local_device_index)
        return torch.device("cpu")

    def run(self, attempt: AttemptArgs) -> Dict[str, Any]:
        """Train one attempt. ``attempt.data`` is the run's DataModule (its datasets are built here, on the worker)."""
        cfg, sink = attempt.cfg, attempt.sink
        started = time.time()
        self.train_thread = threading.get_ident()
        # Rank 0 reports; the others keep only their heartbeat (a null object, not rank branches).
        bound = cfg.failure.phase_timeout_s
        self.reporter = RayReporter(self.rank, sink, bound) if self.rank == 0 else Reporter(self.rank, False, bound)
        self.reporter.checkpoints = CheckpointWriter(self.reporter._put, attempt.checkpoint_dir,
                                                     cfg.checkpoint.async_save)
        try:
            return self.train(attempt, started)
        finally:
            self.reporter.close()

    def train(self, attempt: AttemptArgs, started: float) -> Dict[str, Any]:
        """The attempt's phases, each named in the heartbeat (a hang report says which one stalled).
        The process group was joined before (``join``, bounded by its own rendezvous timeout)."""
        from orchestrator.worker import loop
        from orchestrator.checkpoint import state as S
        from orchestrator.worker.build import build
        from orchestrator.worker.callbacks.pruning import attempt_callbacks

        cfg, plan, r = attempt.cfg, attempt.plan, self.reporter
        r.enter_phase("build")  # the user's data (fetch, dataset build) and model
        device = self.device(cfg)
        components = build(cfg, attempt.data, plan, self.rank, device)
        r.info(StartupInfo(plan.attempt, {"worker_build_s": time.time() - started}))
        train_state, best_model = None, None
        if attempt.resume is not None:
            r.enter_phase("restore")
            payload = S.load_payload(attempt.resume_payload())
            train_state = S.restore(payload, components.trainables, self.rank, self.world_size, cfg.trainer.seed,
                                    plan.attempt)
            best_model = payload.get("best_model")
            # The checkpoint's schedule carries the old base LR; this attempt's may differ (elastic).
            rebase_lr(components.scheduler, components.base_lr * plan.lr_scale)
        r.enter_phase("first_step")  # loader start-up, first batch, first step (compilation): until step 1 ends
        try:
            result = loop.fit(components, r, train_state, best_model, extra_callbacks=attempt_callbacks(attempt))
        except Exception as err:
            # The driver's view of the step can be a second old; "the same error at the same step"
            # (a bug, not a fault) needs the exact one.
            raise TrainingError(r.heartbeat.step, err) from err
        r.enter_phase("saving")
        r.wait_persisted()  # the final records and checkpoint arrived before we say we are done
        r.enter_phase("done")
        return asdict(result)

    # ----------------------------------------------------------------- served while training
    def poll(self) -> Heartbeat:
        return dataclasses.replace(self.reporter.heartbeat)  # a copy: the training thread goes on updating it

    def request_stop(self, reason: str) -> None:
        self.reporter.request_stop(reason)

    def stacks(self) -> str:
        """Python stacks of this worker's threads, the training thread first (for hang reports)."""
        frames = sys._current_frames()
        names = {t.ident: t.name for t in threading.enumerate()}
        answering = threading.get_ident()  # the thread serving this call: the same everywhere, noise in a report
        order = sorted((ident for ident in frames if ident != answering), key=lambda ident: ident != self.train_thread)
        parts = []
        for ident in order:
            label = "training thread" if ident == self.train_thread else names.get(ident, str(ident))
            if label.startswith(("ThreadPoolExecutor", "Thread-", "heartbeat-keepalive")) and ident != self.train_thread:
                continue  # Ray's idle executor threads (one of them is answering this call), our keepalive
            parts.append(f"--- {label}\n" + "".join(traceback.format_stack(frames[ident])))
        return "\n".join(parts)
