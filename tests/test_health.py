"""Gradient health: per-layer statistics, warnings, where a non-finite value appeared, health.nan_policy."""

from __future__ import annotations

import pytest
import torch

import models
from orchestrator.components import registry
from orchestrator.data.module import data_module
from orchestrator.policy.outcomes import StopKind
from orchestrator.policy.plan import AttemptPlan
from orchestrator.worker import loop
from orchestrator.worker.build import build
from orchestrator.worker.reporting import Reporter
from orchestrator import config as C
from orchestrator.worker.health import LayerStats, first_non_finite_gradient


def test_a_gradient_warning_is_given_once_per_layer_until_it_recovers():
    model = models.build("mlp", (4,), 2, hidden_sizes=(3,))
    stats = LayerStats(model, C.HealthConfig(vanishing_below=1.0, exploding_above=100.0))

    def check(grad_value):
        for p in model.parameters():
            p.grad = torch.full_like(p, grad_value)
        return stats.collect()[1]

    first = check(1e-6)
    assert len(first) == 4 and all("vanishing gradient" in w for w in first)  # 4 parameter tensors
    assert check(1e-6) == []      # still vanishing: no repeat
    assert check(10.0) == []      # recovered (norms between the bounds)
    assert len(check(1e-6)) == 4  # a new episode warns again



def test_first_non_finite_gradient_names_the_layer_in_forward_order():
    model = models.build("mlp", (4,), 2, hidden_sizes=(3,))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    model.net[3].weight.grad[0, 0] = float("nan")
    assert first_non_finite_gradient(model) == ("net.3.weight", 1, 4)



def scaled_run(max_skips: int, steps: int = 30) -> C.Config:
    return C.Config(
        model=C.MLPConfig(hidden_sizes=[16], dropout=0.0),
        data=C.SyntheticClassificationConfig(num_samples=256, num_features=8, num_classes=3, batch_size=16,
                                             val_fraction=0.0),
        optimizer=C.AdamConfig(lr=0.01), scheduler=C.ConstantSchedulerConfig(),
        scaling=C.ScalingConfig(num_workers=1),
        trainer=C.TrainerConfig(max_steps=steps, max_epochs=50, log_every_n_steps=5),
        checkpoint=C.CheckpointConfig(every_epoch=False),
        health=C.HealthConfig(nan_policy="skip", max_consecutive_skips=max_skips, layer_stats_every_n_steps=0))


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before:UserWarning")
def test_fp16_with_nan_policy_skip_stops_after_max_consecutive_skips():
    # fp16 needs a GPU in a run's config; the loop and the step are the same with a CPU GradScaler.
    # Before: a scaler's steps always counted as finite, so a loss that is NaN for good ran to max_steps.
    cfg = scaled_run(max_skips=3)
    data = data_module(registry.spec(cfg, "data"), cfg.trainer.seed)
    data.prepare()
    c = build(cfg, data, AttemptPlan(0, 1, 1), 0, torch.device("cpu"))
    c.scaler = c.stepper.scaler = torch.amp.GradScaler("cpu")
    c.stepper.loss_hook = lambda loss: loss * float("nan")  # non-finite for good, from the first step
    reporter = Reporter(0, keeps_records=True)
    result = loop.fit(c, reporter)
    assert result.stop_kind is StopKind.NON_FINITE
    assert result.step == 4  # 3 skips allowed in a row, the 4th stops
    events = [r for r in reporter.drain() if getattr(r, "kind", None) == "non_finite"]
    assert [e.step for e in events] == [1, 2, 3, 4] and "stopping" in events[-1].message
