"""What one batch contributes to a step: the loss to minimise and the metrics to report.

The default (``SupervisedStep``) takes a batch ``(x, y)``: ``output = model(x)``,
``loss = loss_fn(output, y)``, plus accuracy for classification and the extra metrics.
A user names their own with ``step._target_=my_project.steps.my_step`` (or passes a function to
``orchestrator.run(step=...)``) for batches that are not ``(x, y)``::

    def my_step(model, batch):            # batch: whatever the DataLoader yields (a dict, ...)
        out = model(batch["features"])
        loss = F.mse_loss(out, batch["target"])
        return loss, {"mae": (out - batch["target"]).abs().mean()}

It returns the loss, or ``(loss, metrics)``, or a dict with ``"loss"`` and the metrics. Metrics
are batch means; the orchestrator weights them by batch size and reduces them across ranks.
Everything else (no_sync accumulation, AMP, clipping, NaN policy, gradient health, TensorBoard,
checkpoints, early stopping on any ``val/<metric>``) applies unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import torch

from orchestrator.components.losses import count_correct, predictions_in


@dataclass
class BatchResult:
    loss: torch.Tensor                  # the batch's mean loss (backward runs on it)
    count: int                          # predictions the mean is over (tokens for text)
    samples: int
    correct: Optional[torch.Tensor] = None   # correct predictions, for accuracy
    metrics: Dict[str, torch.Tensor] = field(default_factory=dict)  # batch means, from a custom step


class SupervisedStep:
    def __init__(self, loss_fn, loss_kind: Optional[str], metric_set=None):
        self.loss_fn = loss_fn
        self.loss_kind = loss_kind
        self.metric_set = metric_set

    @property
    def has_accuracy(self) -> bool:
        return self.loss_kind in ("cross_entropy", "bce")

    def __call__(self, model, batch) -> BatchResult:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise TypeError(f"the default step needs (inputs, targets) batches, got {describe(batch)}; "
                            "name a step function for other batches (step._target_=...)")
        x, y = batch
        output = model(x)
        loss = self.loss_fn(output, y)
        detached = output.detach()
        if self.metric_set:
            self.metric_set.update(detached, y)
        return BatchResult(loss, predictions_in(detached, self.loss_kind), x.shape[0],
                           correct=count_correct(self.loss_kind, detached, y))


class CustomStep:
    """A user's ``fn(model, batch)``, its answer checked and normalised."""

    has_accuracy = False
    metric_set = None

    def __init__(self, fn, label: str):
        self.fn = fn
        self.label = label
        self.metric_names: Optional[tuple] = None

    def __call__(self, model, batch) -> BatchResult:
        loss, metrics = self.split(self.fn(model, batch))
        if self.metric_names is None:
            self.metric_names = tuple(sorted(metrics))
        elif tuple(sorted(metrics)) != self.metric_names:
            raise ValueError(f"step: {self.label} returned metrics {sorted(metrics)}, earlier {list(self.metric_names)}; "
                             "the same names are needed every step (they are reduced across ranks)")
        n = batch_size(batch)
        return BatchResult(loss, n, n, metrics={k: as_tensor(v, loss) for k, v in metrics.items()})

    def split(self, answer: Any):
        if isinstance(answer, dict):
            metrics = dict(answer)
            loss = metrics.pop("loss", None)
        elif isinstance(answer, (tuple, list)) and len(answer) == 2:
            loss, metrics = answer
        else:
            loss, metrics = answer, {}
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise TypeError(f"step: {self.label} must return the loss as a scalar tensor (or (loss, metrics), or "
                            f"a dict with 'loss'), got {describe(loss)}")
        return loss, dict(metrics or {})


def as_tensor(value: Any, like: torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().reshape(()).to(torch.float64)
    return torch.tensor(float(value), dtype=torch.float64, device=like.device)


def batch_size(batch: Any) -> int:
    """The leading size of the first tensor in a batch of any nesting (dict, tuple, list)."""
    from torch.utils._pytree import tree_leaves

    for leaf in tree_leaves(batch):
        if isinstance(leaf, torch.Tensor) and leaf.dim() > 0:
            return int(leaf.shape[0])
    raise TypeError(f"cannot tell the batch size of {describe(batch)}: no tensor in it")


def describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, dict):
        return f"a dict with keys {sorted(value)}"
    return f"a {type(value).__name__}"
