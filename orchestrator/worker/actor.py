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
from orchestrator.worker.group_sockets import GroupSockets
from orchestrator.policy.recovery import Held
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

    def close(self) -> None:
        super().close()
        try:
            self.send()  # metrics batched before a failure are valid: a healed gang continues after them
        except Exception:  # noqa: BLE001 - the sink may be gone with the run; nothing to report to
            pass

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
        self.held = None  # peer_heal.HeldState after a failed attempt, for a heal from this rank
        self.group_sockets = GroupSockets()
        torch.set_num_threads(max(1, int(cpus)))  # like torchrun's OMP_NUM_THREADS: one worker, its own cores
        self.training = False
        self.previous_sigterm = install_notice_handler(self.on_sigterm)

    def on_sigterm(self, signum, frame) -> None:
        """While training, SIGTERM is a preemption notice (callbacks/preemption.py): checkpoint with the
        gang, then leave it. Otherwise (idle, or a second signal) Ray's own handler: exit."""
        import signal

        if self.training and self.reporter.noticed_at is None:
            self.reporter.give_notice()
        elif callable(self.previous_sigterm):
            self.previous_sigterm(signum, frame)
        else:  # the default action (terminate), as if this handler were not there
            signal.signal(signal.SIGTERM, self.previous_sigterm or signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    # ----------------------------------------------------------------- placement and rendezvous
    def describe(self) -> WorkerInfo:
        import ray

        ctx = ray.get_runtime_context()
        gpu_ids = [str(g) for g in ray.get_gpu_ids()]
        return WorkerInfo(self.index, ctx.get_node_id(), ray.util.get_node_ip_address(), os.getpid(), gpu_ids)

    def warm(self) -> WorkerInfo:
        """A spare's start: import what building a rank needs, so a replacement begins at its build."""
        import orchestrator.worker.build  # noqa: F401 - components, data, models
        import orchestrator.worker.loop  # noqa: F401
        import orchestrator.worker.peer_heal  # noqa: F401

        # An optimizer's constructor imports torch._dynamo (~1.5 s here, torch 2.13): most of a build.
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        return self.describe()

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
        if cuda_visible_devices is not None and self.local_device_index is None:  # a re-join keeps its device
            # Like Ray Train: workers on one node see all of that node's gang GPUs (so NCCL can use
            # peer-to-peer), each using its own. Set before CUDA initialises in this process.
            (own,) = self.describe().gpu_ids  # exactly one (scaling.gpus_per_worker is 0 or 1)
            os.environ["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices
            self.local_device_index = cuda_visible_devices.split(",").index(own)
        if dist.is_initialized():  # re-joining after a heal: the old group is gone
            dist.destroy_process_group()
        backend = "nccl" if self.local_device_index is not None else "gloo"
        if backend == "nccl":
            # On an NCCL error or timeout, abort the communicator and raise in the training thread, but keep
            # the process (torch's default, 3, ends it): the survivors of a lost peer heal (peer_heal.py).
            os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "2")
        if backend == "gloo":
            import psutil
            import ray

            os.environ.update(network.gloo_socket_ifname(ray.util.get_node_ip_address(), os.environ,
                                                         rendezvous.gloo_ifname, psutil.net_if_addrs()))
        url = network.tcp_url(rendezvous.master_addr, rendezvous.master_port)
        if backend == "gloo":
            self.group_sockets.joining()
        dist.init_process_group(backend, init_method=url, rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=rendezvous.timeout_s))
        if backend == "gloo":
            self.group_sockets.joined()  # what leave_group shuts down after a failed collective

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
        self.training = True
        try:
            return self.train(attempt, started)
        finally:
            self.training = False
            self.reporter.close()

    def train(self, attempt: AttemptArgs, started: float) -> Dict[str, Any]:
        """The attempt's phases, each named in the heartbeat (a hang report says which one stalled).
        The process group was joined before (``join``, bounded by its own rendezvous timeout)."""
        from orchestrator.worker import peer_heal

        cfg, r = attempt.cfg, self.reporter
        r.enter_phase("build")  # the user's data (fetch, dataset build) and model
        device = self.device(cfg)

        held, self.held = self.held, None
        try:
            if attempt.heal is not None:
                fit_loop = self.healed(attempt, held, device, started)
            else:
                fit_loop = self.fresh(attempt, device, started)
        except Exception:
            peer_heal.leave_group(self.group_sockets)  # a failed heal: the peers waiting in it fail now too
            raise
        r.enter_phase("first_step")  # loader start-up, first batch, first step (compilation): until step 1 ends
        try:
            result = fit_loop.fit()
        except Exception as err:
            if cfg.failure.recovery == "peer" and self.world_size > 1 and not self.reporter.noticed_at:
                self.held = peer_heal.hold(fit_loop)  # the driver may heal the gang from this state
            peer_heal.leave_group(self.group_sockets)  # the other ranks' collectives fail now, not at their timeout
            # The driver's view of the step can be a second old; "the same error at the same step"
            # (a bug, not a fault) needs the exact one.
            raise TrainingError(r.heartbeat.step, err) from err
        r.enter_phase("saving")
        r.wait_persisted()  # the final records and checkpoint arrived before we say we are done
        r.enter_phase("done")
        return asdict(result)

    def fresh(self, attempt: AttemptArgs, device: torch.device, started: float):
        """Build the components, from the attempt's checkpoint if it has one."""
        from orchestrator.checkpoint import state as S
        from orchestrator.worker.build import build
        from orchestrator.worker.callbacks.pruning import attempt_callbacks
        from orchestrator.worker.loop import Loop

        cfg, plan, r = attempt.cfg, attempt.plan, self.reporter
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
        return Loop(components, r, train_state or S.TrainState(), best_model,
                    extra_callbacks=attempt_callbacks(attempt))

    def healed(self, attempt: AttemptArgs, held, device: torch.device, started: float):
        """Continue a healed gang: a survivor from what it holds, a replacement from its peer's state."""
        from orchestrator.worker import peer_heal
        from orchestrator.worker.build import build
        from orchestrator.worker.callbacks.pruning import attempt_callbacks
        from orchestrator.worker.loop import Loop

        cfg, r = attempt.cfg, self.reporter
        if held is not None:
            components = held.components
            components.plan = attempt.plan
        else:
            components = build(cfg, attempt.data, attempt.plan, self.rank, device, wrap=False)
        r.info(StartupInfo(attempt.plan.attempt, {"worker_build_s": time.time() - started}))
        r.enter_phase("restore")
        continued = peer_heal.heal(components, held, attempt.heal, self.rank)
        if self.rank == 0 and held is None:  # rank 0 was lost, with the rows it had not yet delivered
            r.resend(continued.recent_metrics)
        fit_loop = Loop(components, r, continued.state, continued.best_weights,
                        extra_callbacks=attempt_callbacks(attempt))
        fit_loop.stats = continued.stats  # the rows not yet reduced, the same shape on every rank
        return fit_loop

    def held_state(self) -> Held:
        """What this worker still holds after a failed attempt (the driver plans the heal from it)."""
        return self.held.summary() if self.held is not None else Held(step=None, busy=self.training)

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


def install_notice_handler(handler):
    """SIGTERM to ``handler`` (actors are created on their process's main thread, where Python allows
    it); returns the handler it replaces (Ray's: exit the process)."""
    import signal

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (the Worker used without Ray, in a thread): leave it
        return None
