"""The learning-rate schedule component.

``scheduler._target_`` is any ``torch.optim.lr_scheduler`` class (or factory) taking the optimizer
first, stepped once per optimizer step; it may also name ``total_steps`` and ``steps_per_epoch`` to
get them. The built-in schedules are ``LambdaLR``s of the pure ``*_factor`` functions below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from orchestrator.config.errors import MISSING, require

CONTEXT = ("total_steps", "steps_per_epoch")


@dataclass
class SchedulerConfig:
    _target_: str = MISSING
    name: str = "scheduler"
    # Linear warm-up from 0 over this many optimizer steps.
    warmup_steps: int = 0

    def __post_init__(self):
        require(self.warmup_steps >= 0, "scheduler.warmup_steps", "must be >= 0", self.warmup_steps)


@dataclass
class ConstantSchedulerConfig(SchedulerConfig):
    _target_: str = "orchestrator.components.schedulers.constant"
    name: str = "constant"


@dataclass
class StepSchedulerConfig(SchedulerConfig):
    _target_: str = "orchestrator.components.schedulers.step_decay"
    name: str = "step"
    # Multiply the learning rate by gamma every step_epochs epochs.
    step_epochs: int = 10
    gamma: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        require(self.step_epochs > 0, "scheduler.step_epochs", "must be > 0", self.step_epochs)
        require(0.0 < self.gamma <= 1.0, "scheduler.gamma", "must be in (0, 1]", self.gamma)


@dataclass
class CosineSchedulerConfig(SchedulerConfig):
    _target_: str = "orchestrator.components.schedulers.cosine"
    name: str = "cosine"
    warmup_steps: int = 50
    # Final learning rate as a fraction of optimizer.lr.
    min_lr_ratio: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        require(0.0 <= self.min_lr_ratio <= 1.0, "scheduler.min_lr_ratio", "must be in [0, 1]",
                self.min_lr_ratio)


SCHEMAS = [ConstantSchedulerConfig, StepSchedulerConfig, CosineSchedulerConfig]


# ----------------------------------------------------------------------------- pure factors
def warmup_factor(step: int, warmup_steps: int) -> float:
    return (step + 1) / warmup_steps


def constant_factor(step: int, warmup_steps: int = 0) -> float:
    return warmup_factor(step, warmup_steps) if step < warmup_steps else 1.0


def step_factor(step: int, steps_per_epoch: int, step_epochs: int, gamma: float, warmup_steps: int = 0) -> float:
    if step < warmup_steps:
        return warmup_factor(step, warmup_steps)
    return gamma ** (step // (step_epochs * max(1, steps_per_epoch)))


def cosine_factor(step: int, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0) -> float:
    if step < warmup_steps:
        return warmup_factor(step, warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------- built-in targets
def lambda_lr(optimizer, factor):
    import torch

    # LambdaLR keeps only its step count in state_dict: resuming rebuilds the same function.
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def constant(optimizer, warmup_steps: int = 0):
    scheduler = lambda_lr(optimizer, lambda step: constant_factor(step, warmup_steps))
    scheduler.varies = warmup_steps > 0  # a constant LR needs no per-step work (see Stepper)
    return scheduler


def step_decay(optimizer, steps_per_epoch: int, step_epochs: int = 10, gamma: float = 0.1, warmup_steps: int = 0):
    return lambda_lr(optimizer, lambda step: step_factor(step, steps_per_epoch, step_epochs, gamma, warmup_steps))


def cosine(optimizer, total_steps: int, warmup_steps: int = 50, min_lr_ratio: float = 0.0):
    return lambda_lr(optimizer, lambda step: cosine_factor(step, total_steps, warmup_steps, min_lr_ratio))


def build_scheduler(spec, optimizer, total_steps: int, steps_per_epoch: int):
    """On a worker, from a Spec or the section itself."""
    from orchestrator.components.spec import Spec

    spec = Spec.of("scheduler", spec)
    scheduler = spec.build(optimizer, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
    if not hasattr(scheduler, "step") or not hasattr(scheduler, "state_dict"):
        raise TypeError(f"scheduler: {spec.label} returned {type(scheduler).__name__}, not an LR scheduler")
    return scheduler


def rebase_lr(scheduler, base_lr: float) -> None:
    """Set a LambdaLR schedule's base LR (restored checkpoints carry the old one) and the current LR
    with it. Elastic runs with fewer workers may scale the base LR with the global batch (linear rule).
    Other schedules keep what they restored."""
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if lambdas is None:
        return
    scheduler.base_lrs = [base_lr for _ in scheduler.base_lrs]
    for group, lmbda in zip(scheduler.optimizer.param_groups, lambdas):
        group["initial_lr"] = base_lr
        group["lr"] = base_lr * lmbda(scheduler.last_epoch)
