"""Optimizers and learning-rate schedules, built from config."""

from __future__ import annotations

import math
from typing import Iterable

import torch

from orchestrator import config as C


def build_optimizer(cfg: C.OptimizerConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                 weight_decay=cfg.weight_decay)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer.name: unknown optimizer {cfg.name!r}")


def lr_factor(cfg: C.SchedulerConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of optimizer.lr before optimizer step ``step`` (0-based). Pure, so it is easy to test."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "step":
        return cfg.gamma ** (step // (cfg.step_epochs * max(1, steps_per_epoch)))
    if cfg.name == "cosine":
        span = max(1, total_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"scheduler.name: unknown schedule {cfg.name!r}")


def build_scheduler(cfg: C.SchedulerConfig, optimizer: torch.optim.Optimizer, total_steps: int,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    # LambdaLR keeps only its step count in state_dict: resuming rebuilds the same function.
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg, step, total_steps, steps_per_epoch))


def rebase_lr(scheduler: torch.optim.lr_scheduler.LambdaLR, base_lr: float) -> None:
    """Set the schedule's base LR (restored checkpoints carry the old one) and the current LR with it.
    Elastic runs with fewer workers may scale the base LR with the global batch (linear rule)."""
    scheduler.base_lrs = [base_lr for _ in scheduler.base_lrs]
    for group, lmbda in zip(scheduler.optimizer.param_groups, scheduler.lr_lambdas):
        group["initial_lr"] = base_lr
        group["lr"] = base_lr * lmbda(scheduler.last_epoch)
