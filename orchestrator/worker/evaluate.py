"""Evaluation: exact loss and metrics over a whole split, each rank a disjoint shard."""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch
import torch.distributed as dist

from orchestrator.worker.build import Components
from orchestrator.worker.reporting import Reporter
from orchestrator.worker.stats import all_reduce_sum
from orchestrator.worker.step import Totals


def to_device(batch: Any, device: torch.device) -> Any:
    """A batch of any nesting (tensor, tuple, list, dict) on the device, copied asynchronously."""
    if device.type == "cpu":
        return batch  # already there; .to() would still cost a few microseconds per step
    from torch.utils._pytree import tree_map

    return tree_map(lambda t: t.to(device, non_blocking=True) if isinstance(t, torch.Tensor) else t, batch)


@torch.no_grad()
def sync_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers (batch-norm statistics) on every rank, so all ranks evaluate one model: the one
    checkpoints hold. Training updates each rank's statistics from its own shard after DDP's broadcast."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


@torch.no_grad()
def evaluate(c: Components, dataset, r: Reporter, step: int, prefix: str,
             model: Optional[torch.nn.Module] = None) -> Dict[str, float]:
    """Exact loss and metrics over a whole split: each rank a disjoint shard, then one all-reduce."""
    model = model or c.module  # the bare module: no DDP collectives, shards may differ in length
    sync_buffers(model)  # collective: every rank evaluates at the same step
    model.eval()
    metric_set = c.batch_step.metric_set
    if metric_set:
        metric_set.reset()  # the training window's state was reported at the flush before this
    total = Totals()
    for batch in c.eval_loader(dataset):
        batch = to_device(batch, c.device)
        with c.stepper.autocast():
            result = c.batch_step(model, batch)
        total.add(result, result.loss.detach().double())
        r.progress(step, prefix)
    # The same names on every rank (a rank's shard may be empty): those the step reported in training.
    names = list(getattr(c.batch_step, "metric_names", None) or [])
    local = [float(total.loss_sum) if total.loss_sum is not None else 0.0,
             float(total.correct) if total.correct is not None else 0.0, float(total.count)]
    local += [float(total.metric_sums.get(name, 0.0)) for name in names]
    sums = all_reduce_sum(local, c.device)
    count = max(sums[2], 1)
    metrics = {f"{prefix}/loss": sums[0] / count}
    if c.has_accuracy:
        metrics[f"{prefix}/accuracy"] = sums[1] / count
    metrics.update({f"{prefix}/{name}": sums[3 + i] / count for i, name in enumerate(names)})
    if metric_set:
        metrics.update(metric_set.compute(prefix))  # collective (torchmetrics syncs across ranks)
    return metrics
