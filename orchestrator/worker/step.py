"""One optimizer step: forward, backward (all-reduce overlapped by DDP), clip, update.

Gradient accumulation runs the first k-1 micro-batches under DDP's public
``no_sync()`` so only the last one all-reduces; each micro-batch loss is
divided by k, so the update equals one step on the k-times larger batch.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.distributed as dist


@dataclass
class StepResult:
    loss_sum: torch.Tensor            # sum over predictions, for exact means (no host sync)
    correct: Optional[torch.Tensor]
    count: int                        # predictions
    samples: int
    metric_sums: Dict[str, torch.Tensor]  # a custom step's metrics, times their batch's count
    grad_norm: Optional[torch.Tensor]  # total norm before clipping, when asked for
    # False: a non-finite step (gradients, or with fp16 the loss) whose update was skipped. A bool, or a
    # device tensor when a fused optimizer skipped on the device (read through ``finite``: a host sync).
    applied: Any
    times: Dict[str, float]

    @property
    def finite(self) -> bool:
        return bool(self.applied)


class Totals:
    """Sums over a step's micro-batches, kept as tensors (no host sync)."""

    def __init__(self):
        self.loss_sum = self.correct = None
        self.count = self.samples = 0
        self.metric_sums: Dict[str, torch.Tensor] = {}

    def add(self, result, loss: torch.Tensor) -> None:
        weighted = loss * result.count
        self.loss_sum = weighted if self.loss_sum is None else self.loss_sum + weighted
        if result.correct is not None:
            self.correct = result.correct if self.correct is None else self.correct + result.correct
        for name, value in result.metrics.items():
            self.metric_sums[name] = self.metric_sums.get(name, 0) + value * result.count
        self.count += result.count
        self.samples += result.samples


class CudaPhases:
    """A GPU step's compute and optimizer times from CUDA events (the host's clock would only see
    kernel launches). Events are read one step late, when they have completed."""

    def __init__(self):
        self.current: Optional[List] = None
        self.previous: Optional[List] = None

    def mark(self, index: int) -> None:
        if index == 0:
            self.previous, self.current = self.current, [torch.cuda.Event(enable_timing=True) for _ in range(3)]
        self.current[index].record()

    def previous_seconds(self) -> Optional[Tuple[float, float]]:
        if self.previous is None:
            return None
        start, after_backward, end = self.previous
        end.synchronize()
        return start.elapsed_time(after_backward) / 1000.0, after_backward.elapsed_time(end) / 1000.0


@dataclass(frozen=True)
class StepSettings:
    device: torch.device
    autocast_dtype: Optional[torch.dtype] = None  # bf16/fp16 autocast (trainer.precision)
    clip_grad_norm: Optional[float] = None
    clip_grad_value: Optional[float] = None


class Stepper:
    def __init__(self, model: torch.nn.Module, objects, batch_step, settings: StepSettings):
        """``model``: the DDP wrapper (or the module itself with one rank); ``objects``: a checkpoint's
        Trainables (optimizer, scheduler, scaler); ``batch_step``: (model, batch) -> BatchResult."""
        self.model = model
        self.optimizer, self.scheduler, self.scaler = objects.optimizer, objects.scheduler, objects.scaler
        self.batch_step = batch_step
        self.device = settings.device
        self.autocast_dtype = settings.autocast_dtype
        self.clip_grad_norm = settings.clip_grad_norm
        self.clip_grad_value = settings.clip_grad_value
        device = settings.device
        # The wrapped model: evaluation switches it (not the DDP wrapper) to eval mode.
        self.module = getattr(model, "module", model)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.cuda_phases = CudaPhases() if device.type == "cuda" else None
        # False for a constant schedule without warm-up (set by build); the LR then never changes.
        self.schedule_varies = True
        # Hook for fault injection and tests: called with the loss before backward.
        self.loss_hook: Optional[Callable[[torch.Tensor], torch.Tensor]] = None

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def step(self, micro_batches: List[Any], want_grad_norm: bool, data_seconds: float) -> StepResult:
        t0 = time.perf_counter()
        if self.cuda_phases is not None:
            self.cuda_phases.mark(0)
        if not self.module.training:  # walking the module tree every step costs ~70 us on a small MLP
            self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        k = len(micro_batches)
        total = Totals()
        for i, batch in enumerate(micro_batches):
            # Only the last micro-batch all-reduces gradients.
            last = i == k - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.model, "no_sync") else self.model.no_sync()
            with sync:
                with self.autocast():
                    result = self.batch_step(self.model, batch)
                loss = result.loss
                if self.loss_hook is not None:
                    loss = self.loss_hook(loss)
                scaled = loss / k if k > 1 else loss
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            total.add(result, loss.detach())
        t1 = time.perf_counter()
        if self.cuda_phases is not None:
            self.cuda_phases.mark(1)
        grad_norm, finite = self.update(want_grad_norm, total.loss_sum)
        t2 = time.perf_counter()
        compute, optimizer = t1 - t0, t2 - t1
        if self.cuda_phases is not None:
            self.cuda_phases.mark(2)
            # On a GPU the split comes from events (one step late); the step's wall time stays the host's.
            compute, optimizer = self.cuda_phases.previous_seconds() or (compute, optimizer)
        return StepResult(total.loss_sum, total.correct, total.count, total.samples, total.metric_sums, grad_norm, finite,
                          {"data_s": data_seconds, "compute_s": compute, "optimizer_s": optimizer,
                           "step_s": data_seconds + t2 - t0})

    def update(self, want_grad_norm: bool, loss_sum: torch.Tensor) -> Tuple[Optional[torch.Tensor], Any]:
        """Clip and apply the update, unless the gradients are not finite (then nothing changes).

        Returns (total gradient norm before clipping, if computed; whether the update was applied: a bool,
        or a device tensor when the skip was decided on the device).
        """
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # clip and measure true gradients
        grads = [p.grad for p in self.params if p.grad is not None]
        grad_norm = None
        if want_grad_norm or self.clip_grad_norm:
            grad_norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)
        total = finiteness_probe(grads, grad_norm, self.device)  # before clipping, which can hide an inf
        self.clip(grad_norm)
        if self.scaler is not None:
            finite = self.scaler_step(non_finite_flag(total), loss_sum)
        elif self.masks_on_device():
            found_inf = non_finite_flag(total)
            device_step(self.optimizer, found_inf)
            finite = found_inf == 0  # decided on the device: read it when the loop needs it
        else:
            finite = bool(torch.isfinite(total))  # the host sync that gates the update
            if finite:
                self.optimizer.step()
        # The schedule follows the step counter, applied or not.
        if self.schedule_varies:
            self.scheduler.step()
        else:
            self.scheduler.last_epoch += 1  # a constant LR: keep the count, skip LambdaLR's per-step work
        return grad_norm, finite

    def clip(self, grad_norm: Optional[torch.Tensor]) -> None:
        """Device-only work (no host sync); on a step that will be skipped it changes nothing that matters."""
        if self.clip_grad_value:
            torch.nn.utils.clip_grad_value_(self.params, self.clip_grad_value)
        if self.clip_grad_norm and self.clip_grad_value:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_grad_norm)  # norm after value clipping
        elif self.clip_grad_norm:
            torch.nn.utils.clip_grads_with_norm_(self.params, self.clip_grad_norm, grad_norm)

    def masks_on_device(self) -> bool:
        """A fused optimizer skips the update on the device from ``found_inf`` (as under GradScaler), so the
        step needs no host sync. Not its first update: fused SGD with momentum then leaves its new momentum
        buffers uninitialised when it skips (torch 2.13), so that one is gated on the host."""
        return bool(self.optimizer.defaults.get("fused")) and bool(self.optimizer.state)

    def scaler_step(self, found_inf: torch.Tensor, loss_sum: torch.Tensor) -> bool:
        """fp16: a non-finite gradient is usually the scaler's routine overflow (it skips the update and
        lowers the scale); it counts as a non-finite step only when some rank's loss was non-finite, which
        no scale fixes. Every rank sees the same (all-reduced) gradients, so all take the same branch.
        GradScaler itself reads found_inf on the host for a non-fused optimizer, so this read adds little."""
        skipped = bool(found_inf.item())
        self.scaler.step(self.optimizer)  # skips on its own, identical, finding
        self.scaler.update()              # lowers the scale after an overflow
        return not (skipped and loss_non_finite_on_any_rank(loss_sum))


def finiteness_probe(grads: List[torch.Tensor], grad_norm: Optional[torch.Tensor], device) -> torch.Tensor:
    """A device scalar that is finite exactly when every element of every gradient is (no host sync).

    One fused reduction over all gradients (torch._foreach_norm, as inside get_total_norm): a NaN that
    arises anywhere in backward is seen, not only one that reaches a chosen tensor. The sum of the
    per-tensor 2-norms (or the total norm, when the step computes it anyway): 3 dispatches instead of
    get_total_norm's 3 + one per tensor (~15 us less per step on a small MLP on CPU). Not the max-norm:
    on CPU torch's foreach max-norm takes ~0.9 ms for a 110k-parameter MLP against ~0.09 ms (torch 2.13;
    a third of a small model's step). A 2-norm can overflow only for gradient elements above ~1e19,
    which health.exploding_above reports long before; such a step is then skipped.
    """
    if grad_norm is not None:
        return grad_norm
    if not grads:
        return torch.zeros((), device=device)
    return torch.stack(torch._foreach_norm(grads)).sum(dtype=torch.float32)  # fp16 norms: no overflow at 65504


def non_finite_flag(probe: torch.Tensor) -> torch.Tensor:
    """1.0 where the probe is NaN or Inf, else 0.0: the ``found_inf`` of GradScaler and fused optimizers."""
    return (~torch.isfinite(probe)).float()


def device_step(optimizer: torch.optim.Optimizer, found_inf: torch.Tensor) -> None:
    """Hand ``found_inf`` to a fused optimizer the way GradScaler does (its kernels skip the update and
    undo the step count when it is nonzero)."""
    optimizer.grad_scale, optimizer.found_inf = None, found_inf
    try:
        optimizer.step()
    finally:
        del optimizer.grad_scale, optimizer.found_inf


def loss_non_finite_on_any_rank(loss_sum: torch.Tensor) -> bool:
    """Collective when distributed: called by every rank on the same (skipped) steps."""
    bad = (~torch.isfinite(loss_sum)).float()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    return bool(bad.item())
