"""The step function: what one dict batch contributes. The orchestrator does the rest (DDP,
accumulation, clipping, NaN policy, reduction across ranks, TensorBoard, early stopping)."""

from __future__ import annotations

import torch.nn.functional as F


def price_step(model, batch, huber_delta: float = 1.0):
    prediction = model(batch["numeric"], batch["neighbourhood"])
    error = prediction - batch["price"]
    loss = F.huber_loss(prediction, batch["price"], delta=huber_delta)
    # A custom metric: mean absolute error (a batch mean; the orchestrator weights it by batch size).
    return loss, {"mae": error.abs().mean(), "rmse_sq": (error ** 2).mean()}
