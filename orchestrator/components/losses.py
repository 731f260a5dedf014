"""The loss component: ``loss._target_`` builds a callable ``loss_fn(output, target) -> scalar``
(e.g. ``torch.nn.CrossEntropyLoss`` with ``label_smoothing``). The built-ins are shape-agnostic
over (batch[, time], outputs) and ``auto`` picks one from the data's task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from orchestrator.config.errors import MISSING

CROSS_ENTROPY = "orchestrator.components.losses.CrossEntropy"
BCE = "orchestrator.components.losses.BinaryCrossEntropy"
MSE = "orchestrator.components.losses.MeanSquaredError"
AUTO = "auto"


@dataclass
class LossConfig:
    # An import path, or "auto": cross-entropy for classification and text, MSE for regression.
    _target_: str = MISSING
    name: str = "loss"


@dataclass
class AutoLossConfig(LossConfig):
    _target_: str = AUTO
    name: str = "auto"


@dataclass
class CrossEntropyConfig(LossConfig):
    _target_: str = CROSS_ENTROPY
    name: str = "cross_entropy"


@dataclass
class BCEConfig(LossConfig):
    _target_: str = BCE
    name: str = "bce"


@dataclass
class MSEConfig(LossConfig):
    _target_: str = MSE
    name: str = "mse"


SCHEMAS = [AutoLossConfig, CrossEntropyConfig, BCEConfig, MSEConfig]
BY_NAME = {"cross_entropy": CROSS_ENTROPY, "bce": BCE, "mse": MSE}
KIND_OF_TARGET = {CROSS_ENTROPY: "cross_entropy", BCE: "bce", MSE: "mse"}


def auto_target(task: Optional[str]) -> str:
    return MSE if task == "regression" else CROSS_ENTROPY


class CrossEntropy:
    """Mean cross-entropy over all predictions; (batch, time, classes) for text is flattened."""

    def __call__(self, output, target):
        import torch.nn.functional as F

        if output.dim() > 2:
            output, target = output.reshape(-1, output.shape[-1]), target.reshape(-1)
        import torch

        return F.cross_entropy(output if output.dtype == torch.float32 else output.float(), target)


class BinaryCrossEntropy:
    def __call__(self, output, target):
        import torch.nn.functional as F

        return F.binary_cross_entropy_with_logits(output.reshape(-1).float(), target.reshape(-1).float())


class MeanSquaredError:
    def __call__(self, output, target):
        import torch.nn.functional as F

        return F.mse_loss(output.float(), target.reshape(output.shape).float())


def kind_of(loss_fn) -> Optional[str]:
    """Which accuracy a loss implies: built-ins and torch's own losses are recognised by type."""
    import torch

    kinds = {CrossEntropy: "cross_entropy", torch.nn.CrossEntropyLoss: "cross_entropy",
             BinaryCrossEntropy: "bce", torch.nn.BCEWithLogitsLoss: "bce",
             MeanSquaredError: "mse", torch.nn.MSELoss: "mse"}
    return next((kind for cls, kind in kinds.items() if isinstance(loss_fn, cls)), None)


def build_loss(spec, task: Optional[str]):
    """On a worker: ``auto`` resolved from the data's task; a class is instantiated, a function used as is."""
    import inspect

    from orchestrator.components.spec import Spec

    if spec.target == AUTO:
        spec = Spec(spec.key, auto_target(task), spec.kwargs)
    obj = spec.resolve()
    if inspect.isclass(obj) or spec.kwargs:
        return spec.build()
    return obj


def count_correct(kind: Optional[str], output, target):
    """Number of correct predictions (a tensor: no host sync), or None where accuracy means nothing."""
    if kind == "cross_entropy":
        if output.dim() > 2:
            output, target = output.reshape(-1, output.shape[-1]), target.reshape(-1)
        return (output.argmax(dim=1) == target).sum()
    if kind == "bce":
        return ((output.reshape(-1) > 0).long() == target.reshape(-1)).sum()
    return None


def predictions_in(output, kind: Optional[str]) -> int:
    """How many predictions a batch output holds (tokens for text, rows otherwise)."""
    if kind == "cross_entropy" and output.dim() > 2:
        return output.numel() // output.shape[-1]
    return output.shape[0]
