"""Fault injection (config group ``chaos``): makes a chosen rank fail at a chosen step.

Used to try out fault tolerance and by its tests; ``kind=none`` (the default) does nothing.
"""

from __future__ import annotations

import os
import signal
import time

import torch

from orchestrator import config as C


class InjectedFailure(RuntimeError):
    pass


def armed(cfg: C.ChaosConfig, rank: int, attempt: int) -> bool:
    repeats = not cfg.once or cfg.every_n_steps is not None
    return cfg.kind != "none" and cfg.rank in (rank, -1) and (attempt == 0 or repeats)


def due(cfg: C.ChaosConfig, step: int, attempt: int) -> bool:
    """With every_n_steps, attempt k fails at at_step + k * every_n_steps: one failure per attempt,
    each later than the last (a retried step never fails again)."""
    return step == cfg.at_step + attempt * (cfg.every_n_steps or 0)


def before_step(cfg: C.ChaosConfig, rank: int, attempt: int, step: int, stepper) -> None:
    """Called before optimizer step ``step`` (1-based) starts."""
    if not armed(cfg, rank, attempt) or not due(cfg, step, attempt):
        return
    if cfg.kind == "raise":
        raise InjectedFailure(f"chaos: injected exception at step {step} on rank {rank}")
    if cfg.kind == "exit":
        os.kill(os.getpid(), signal.SIGKILL)  # as abrupt as the OOM killer
    if cfg.kind == "term":
        os.kill(os.getpid(), signal.SIGTERM)  # a preemption notice: the process has a grace period
    if cfg.kind == "stall":
        while True:  # stops making progress; peers block in the next all-reduce
            time.sleep(1.0)
    if cfg.kind == "nan":
        stepper.loss_hook = poison_once(stepper)


def poison_once(stepper):
    def hook(loss: torch.Tensor) -> torch.Tensor:
        stepper.loss_hook = None
        return loss * float("nan")
    return hook
