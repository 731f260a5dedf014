"""Loss functions and the task metric (accuracy), shape-agnostic over (batch[, time], outputs)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def compute_loss(kind: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean loss over all predictions in the batch."""
    if kind == "cross_entropy":
        if output.dim() > 2:  # (batch, time, classes) for text
            output, target = output.reshape(-1, output.shape[-1]), target.reshape(-1)
        return F.cross_entropy(output if output.dtype == torch.float32 else output.float(), target)
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(output.reshape(-1).float(), target.reshape(-1).float())
    if kind == "mse":
        return F.mse_loss(output.float(), target.reshape(output.shape).float())
    raise ValueError(f"trainer.loss: unknown loss {kind!r}")


def count_correct(kind: str, output: torch.Tensor, target: torch.Tensor) -> Optional[torch.Tensor]:
    """Number of correct predictions (a tensor: no host sync), or None for regression."""
    if kind == "cross_entropy":
        if output.dim() > 2:
            output, target = output.reshape(-1, output.shape[-1]), target.reshape(-1)
        return (output.argmax(dim=1) == target).sum()
    if kind == "bce":
        return ((output.reshape(-1) > 0).long() == target.reshape(-1)).sum()
    return None


def predictions_in(output: torch.Tensor, kind: str) -> int:
    """How many predictions a batch output holds (tokens for text, rows otherwise)."""
    if kind == "cross_entropy":
        return output.numel() // output.shape[-1]
    return output.shape[0]


