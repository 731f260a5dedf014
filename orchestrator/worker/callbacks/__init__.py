"""The loop's callbacks: the built-in behaviours from config, then the user's own (``callbacks``)."""

from __future__ import annotations

from typing import List

from orchestrator import config as C
from orchestrator.components.models import setting
from orchestrator.worker.callbacks.bad_samples import BadSampleReport
from orchestrator.worker.callbacks.preemption import Preemption
from orchestrator.worker.callbacks.base import Callback
from orchestrator.worker.callbacks.schedule import Chaos, CheckpointSchedule, GradientHealth
from orchestrator.worker.callbacks.stopping import BestModel, EarlyStopping, OverfittingSignal
from orchestrator.worker.callbacks.test_split import TestEvaluation

__all__ = ["Callback", "built_in", "from_config"]


def built_in(cfg: C.Config, module, keeps_records: bool, has_test_split: bool) -> List[Callback]:
    """In the order they act: fault injection and gradient health around the step; at a validation
    the best model, then the overfitting signal, then early stopping; checkpoints after that."""
    s = cfg.stopping
    best = BestModel(cfg.checkpoint.monitor, cfg.checkpoint.mode, keep_weights=has_test_split and s.test_best)
    callbacks: List[Callback] = [Chaos(cfg.chaos)] if cfg.chaos.kind != "none" else []
    if keeps_records:  # rank 0 only: per-layer statistics are the same on every rank
        callbacks.append(GradientHealth(module, cfg.health))
    callbacks.append(best)
    if s.overfitting.enabled:
        callbacks.append(OverfittingSignal(s.overfitting.patience, s.overfitting.stop))
    if s.early.monitor:
        callbacks.append(EarlyStopping(s.early.monitor, s.early.mode, s.early.patience, s.early.min_delta))
    if setting(cfg.data, "on_bad_sample", "fail") == "skip":
        callbacks.append(BadSampleReport(cfg.trainer.log_every_n_steps))
    callbacks.append(CheckpointSchedule(cfg.checkpoint))
    callbacks.append(Preemption())
    if s.test_best:
        callbacks.append(TestEvaluation(best))
    return callbacks


def from_config(cfg: C.Config, module, keeps_records: bool, has_test_split: bool) -> List[Callback]:
    from orchestrator.components.spec import Spec

    users = [Spec.of(f"callbacks.{name}", node).build() for name, node in (cfg.callbacks or {}).items()]
    return built_in(cfg, module, keeps_records, has_test_split) + users
