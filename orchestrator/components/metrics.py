"""The metrics component: extra metrics by ``_target_``, computed correctly under DDP.

``metrics`` maps a name to a spec, e.g. ``+metrics.f1._target_=torchmetrics.classification.MulticlassF1Score
+metrics.f1.num_classes=10``. Each is a ``torchmetrics.Metric`` (or anything with ``update(preds,
target)``, ``compute()`` and ``reset()``): torchmetrics keeps per-rank state and synchronises it
across ranks in ``compute()``, so values are exact for the whole gang, not rank 0's. With the default
step they are updated with (model output, target) on every training and evaluation batch and reported
as ``train/<name>`` (at every metrics flush) and ``val/<name>`` / ``test/<name>`` (over the whole split).
A custom step function reports its own metrics instead (see ``steps.py``).
Accuracy for classification is built in and needs no entry.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

from orchestrator.components.spec import Spec
from orchestrator.config.errors import ConfigError


def specs(node: Any) -> Dict[str, Spec]:
    if node is None:
        return {}
    if not isinstance(node, Mapping):
        raise ConfigError(f"metrics: must map metric names to components (got {type(node).__name__})")
    return {name: Spec.of(f"metrics.{name}", value) for name, value in node.items()}


class MetricSet:
    """The run's extra metrics on one rank. ``compute`` is collective (torchmetrics syncs there)."""

    def __init__(self, metrics: Dict[str, Any]):
        self.metrics = metrics

    @classmethod
    def build(cls, node: Any, device) -> "MetricSet":
        built = {}
        for name, spec in specs(node).items():
            metric = spec.build()
            for method in ("update", "compute", "reset"):
                if not callable(getattr(metric, method, None)):
                    raise TypeError(f"metrics.{name}: {spec.label} has no {method}() (use a torchmetrics.Metric)")
            built[name] = metric.to(device) if hasattr(metric, "to") else metric
        return cls(built)

    def __bool__(self) -> bool:
        return bool(self.metrics)

    def update(self, output, target) -> None:
        for metric in self.metrics.values():
            metric.update(output, target)

    def compute(self, prefix: str = "") -> Dict[str, float]:
        """Collective: every rank calls it at the same point. Keys are ``prefix/name`` (or ``name``)."""
        values = {}
        for name, metric in self.metrics.items():
            value = metric.compute()
            values[f"{prefix}/{name}" if prefix else name] = float(value.item() if hasattr(value, "item") else value)
            metric.reset()
        return values

    def reset(self) -> None:
        for metric in self.metrics.values():
            metric.reset()
