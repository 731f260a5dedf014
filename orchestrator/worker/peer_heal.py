"""A rank's side of healing a gang from a live peer (failure.recovery=peer; the plan: policy/recovery.py).

When a peer dies, the collective in flight raises on the survivors (gloo: "connection closed by
peer"; NCCL: the communicator is aborted). Each survivor keeps what it trained (``Held``), leaves
the broken process group (which fails the other survivors' pending collectives at once instead of
at the collective timeout) and waits for the driver. The driver re-forms the group with a
replacement in the dead rank's place; then every rank, in the same order:

1. ``share_state``: the source (the most advanced survivor) broadcasts its model, optimizer,
   schedule, counters and pending metric rows to the receivers, over a group of just them;
2. ``wrap``: a new DistributedDataParallel over the new group (its constructor broadcasts rank 0's
   weights, which by now every rank holds);
3. the loop continues after the source's step.

Nothing random is transferred: each step's generator is derived from (seed, rank, step)
(``seed_step``), so a replacement draws what the lost rank would have drawn.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.distributed as dist

from orchestrator.checkpoint import state as S
from orchestrator.policy.recovery import Held, HealPlan
from orchestrator.worker.build import Components, wrap_ddp
from orchestrator.worker.stats import StepStats


@dataclass
class HeldState:
    """What a survivor keeps in memory for the heal."""
    components: Components
    state: S.TrainState
    best_weights: Optional[Dict[str, torch.Tensor]]
    stats: StepStats           # the metric rows not yet reduced (the newcomer gets empty rows like them)
    in_flight: bool            # the failure hit inside a step: that step is dropped
    recent_metrics: List[Tuple[int, Dict[str, float]]] = field(default_factory=list)  # rows reduced lately

    def summary(self) -> Held:
        return Held(step=self.state.step, in_flight=self.in_flight)


def hold(loop) -> HeldState:
    """A survivor's state after a failed collective (the loop's objects, not copies)."""
    loop.state.monitors = loop.callback_states()
    return HeldState(loop.c, loop.state, loop.best_weights, loop.stats, in_flight=loop.step_in_flight,
                     recent_metrics=list(loop.r.recent_metrics))


def leave_group(sockets=None) -> None:
    """Tear down this rank's process group: the peers still waiting in a collective with it fail now.
    gloo: shut its connections down (``group_sockets.py``: nothing else closes them while the process
    lives). NCCL: abort the communicators first (torch's ``_abort_process_group``, as torchft does), since
    ``destroy_process_group`` waits for pending work, which after a lost peer never completes."""
    if sockets is not None:
        sockets.shut_down()
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if dist.get_backend() == "nccl":
            dist.distributed_c10d._abort_process_group()
    except Exception:  # noqa: BLE001 - already aborted by the NCCL watchdog (TORCH_NCCL_ASYNC_ERROR_HANDLING=2)
        pass
    try:
        dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - a broken group may fail to tear down cleanly; it is gone either way
        pass


def seed_step(seed: int, rank: int, step: int, device: torch.device) -> None:
    """Each step's random streams (dropout, noise) from (seed, rank, step): a replacement, or a resumed
    run, draws exactly what the rank it replaces would have drawn. ~2 us on the CPU generator."""
    value = hash((seed, rank, step)) % 2**63
    torch.default_generator.manual_seed(value)
    if device.type == "cuda":
        torch.cuda.manual_seed(value)  # the current device's generator


def payload_of(held: HeldState) -> bytes:
    """The source's state, as a weights-only checkpoint payload (plus the pending rows' layout)."""
    c = held.components
    return S.serialize({
        "format_version": S.FORMAT_VERSION,
        "model": c.module.state_dict(),
        "optimizer": c.optimizer.state_dict(),
        "scheduler": c.scheduler.state_dict(),
        "scaler": c.scaler.state_dict() if c.scaler is not None else {},
        "train_state": asdict(held.state),
        "best_model": held.best_weights,
        "stats": held.stats.layout(),
        "recent_metrics": held.recent_metrics,
        "world_size": c.plan.world_size,
    })


def broadcast_bytes(data: Optional[bytes], src: int, group, device: torch.device) -> bytes:
    """``data`` from ``src`` to every member of ``group`` (NCCL moves only device tensors)."""
    size = torch.tensor([len(data) if data is not None else 0], dtype=torch.int64, device=device)
    dist.broadcast(size, src=src, group=group)
    if data is not None:
        buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device)
    else:
        buffer = torch.empty(int(size.item()), dtype=torch.uint8, device=device)
    dist.broadcast(buffer, src=src, group=group)
    return data if data is not None else buffer.cpu().numpy().tobytes()


def share_state(c: Components, held: Optional[HeldState], plan: HealPlan, rank: int) -> HeldState:
    """Collective over the re-formed group (every rank calls it): the receivers load the source's state.
    ``held``: this rank's own (None on a replacement). Returns what this rank continues from."""
    members = sorted({plan.source, *plan.receivers})
    group = dist.new_group(members)  # every rank of the group takes part in creating it
    if rank not in members:
        return held
    data = broadcast_bytes(payload_of(held) if rank == plan.source else None, plan.source, group, c.device)
    if rank == plan.source:
        return held
    payload = S.load_payload(data)
    S.load_trainables(payload, c.trainables)
    stats = StepStats(c.device, has_accuracy=c.has_accuracy, log_every=c.cfg.trainer.log_every_n_steps)
    stats.pad_to(payload["stats"])
    metric_set = getattr(c.batch_step, "metric_set", None)
    if metric_set is not None:
        metric_set.reset()  # its pending state is the source's rank's, not this one's
    return HeldState(c, S.TrainState(**payload["train_state"]), payload.get("best_model"), stats, in_flight=False,
                     recent_metrics=payload.get("recent_metrics", []))


def wrap(c: Components) -> None:
    """A new DDP over the re-formed group, around the same module and parameters (the optimizer keeps
    pointing at them). Collective: its constructor checks shapes and broadcasts rank 0's weights."""
    c.model = wrap_ddp(c.module, c.device, True, c.cfg.trainer.ddp, c.cfg.trainer.seed)
    c.stepper.model = c.model


def heal(c: Components, held: Optional[HeldState], plan: HealPlan, rank: int) -> HeldState:
    """Both steps, in order; returns the state this rank continues from."""
    continued = share_state(c, held, plan, rank)
    wrap(c)
    return continued
