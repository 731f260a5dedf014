"""Evaluation: exact loss and accuracy over a whole split, each rank a disjoint shard."""

from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.distributed as dist

from orchestrator import batches
from orchestrator.build import Components
from orchestrator.losses import compute_loss, count_correct, predictions_in
from orchestrator.reporting import Reporter
from orchestrator.stats import all_reduce_sum


def to_device(pair, device: torch.device):
    x, y = pair
    if device.type == "cpu":
        return x, y  # already there; .to() would still cost a few microseconds per step
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


@torch.no_grad()
def sync_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers (batch-norm statistics) on every rank, so all ranks evaluate one model: the one
    checkpoints hold. Training updates each rank's statistics from its own shard after DDP's broadcast."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


@torch.no_grad()
def evaluate(c: Components, view: batches.SplitView, r: Reporter, step: int, prefix: str,
             model: Optional[torch.nn.Module] = None) -> Dict[str, float]:
    """Exact loss/accuracy over a whole split: each rank a disjoint shard, then one all-reduce."""
    model = model or c.module  # the bare module: no DDP collectives, shards may differ in length
    sync_buffers(model)  # collective: every rank evaluates at the same step
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=c.device)
    correct = torch.zeros((), dtype=torch.float64, device=c.device)
    count = 0
    for idx in batches.eval_batches(len(view), c.rank, c.plan.world_size, c.cfg.data.batch_size):
        x, y = to_device(view.batch(idx), c.device)
        with c.stepper.autocast():
            output = model(x)
        n = predictions_in(output, c.loss_kind)
        loss_sum += compute_loss(c.loss_kind, output, y).double() * n
        hits = count_correct(c.loss_kind, output, y)
        if hits is not None:
            correct += hits.double()
        count += n
        r.progress(step, prefix)
    total_loss, total_correct, total = all_reduce_sum([loss_sum.item(), correct.item(), float(count)], c.device)
    metrics = {f"{prefix}/loss": total_loss / max(total, 1)}
    if c.loss_kind != "mse":
        metrics[f"{prefix}/accuracy"] = total_correct / max(total, 1)
    return metrics


