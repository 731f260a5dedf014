"""Gradient health (pure): per-layer statistics, warnings, where a non-finite value appeared."""

from __future__ import annotations

import torch

import models
from orchestrator import config as C
from orchestrator.worker.health import LayerStats, first_non_finite_gradient, sentinel_parameter


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


def test_the_sentinel_is_the_smallest_parameter():
    model = models.build("mlp", (4,), 2, hidden_sizes=(3,))
    assert sentinel_parameter(model).numel() == 2  # the output bias
