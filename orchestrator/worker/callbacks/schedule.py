"""Callbacks that act on a schedule of steps: checkpoints, gradient health, fault injection."""

from __future__ import annotations

from orchestrator import config as C
from orchestrator.worker import chaos
from orchestrator.worker.callbacks.base import Callback
from orchestrator.worker.health import LayerStats


class CheckpointSchedule(Callback):
    """``checkpoint.every_n_steps`` and ``checkpoint.every_epoch`` (the final checkpoint is the loop's)."""

    def __init__(self, cfg: C.CheckpointConfig):
        self.every_n_steps, self.every_epoch = cfg.every_n_steps, cfg.every_epoch

    def on_step_end(self, loop, step, result) -> None:
        if self.every_n_steps and step % self.every_n_steps == 0:
            loop.checkpoint()

    def on_epoch_end(self, loop, epoch) -> None:
        if self.every_epoch:
            loop.checkpoint()


class GradientHealth(Callback):
    """Per-layer gradient/weight norms, update ratios and histograms on rank 0 (gradients are
    identical on every rank after the all-reduce), with vanishing/exploding warnings."""

    def __init__(self, module, cfg: C.HealthConfig):
        self.stats = LayerStats(module, cfg)
        self.due_now = False

    def on_step_start(self, loop, step) -> None:
        self.due_now = self.stats.due(step)
        if self.due_now:
            self.stats.snapshot_weights()  # update ratios need the weights before the step

    def on_step_end(self, loop, step, result) -> None:
        if not self.due_now:
            return
        scalars, warnings = self.stats.collect()
        loop.r.metrics(step, scalars)
        for warning in warnings:
            loop.r.event(step, "gradient_health", warning)
        if self.stats.histograms_due(step):
            loop.r.histograms(step, self.stats.histograms())


class Chaos(Callback):
    """Fault injection (``chaos.kind``), to try out fault tolerance."""

    def __init__(self, cfg: C.ChaosConfig):
        self.cfg = cfg

    def on_step_start(self, loop, step) -> None:
        chaos.before_step(self.cfg, loop.c.rank, loop.c.plan.attempt, step, loop.c.stepper)
