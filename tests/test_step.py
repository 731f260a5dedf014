"""One optimizer step without DDP: accumulation, clipping and skipping non-finite updates."""

from __future__ import annotations

import copy

import pytest
import torch

import models
from orchestrator import config as C
from orchestrator.components.losses import CrossEntropy
from orchestrator.components.steps import SupervisedStep
from orchestrator.components.schedulers import build_scheduler
from orchestrator.worker.step import Stepper

CPU = torch.device("cpu")


def mlp(seed=0):
    torch.manual_seed(seed)
    return models.build("mlp", (5,), 3, hidden_sizes=(16,))  # no dropout or batch norm: deterministic


def stepper(model, optimizer="sgd", lr=0.1, **options) -> Stepper:
    opt = (torch.optim.SGD(model.parameters(), lr=lr) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=lr))
    scheduler = build_scheduler(C.ConstantSchedulerConfig(), opt, total_steps=10, steps_per_epoch=10)
    return Stepper(model, opt, scheduler, SupervisedStep(CrossEntropy(), "cross_entropy"), CPU, **options)


def batch(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g) * 5, torch.randint(0, 3, (n,), generator=g)


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def grads(model):
    return [p.grad for p in model.parameters()]


def total_norm(tensors):
    return torch.sqrt(sum((t.double() ** 2).sum() for t in tensors)).item()


def reference_grads(model, x, y):
    """Plain gradients of the mean loss on (x, y), on a copy of the model."""
    twin = copy.deepcopy(model)
    CrossEntropy()(twin(x), y).backward()
    return [p.grad.clone() for p in twin.parameters()]


# ----------------------------------------------------------------------------- accumulation
@pytest.mark.parametrize("k", [2, 4])
def test_accumulating_k_micro_batches_equals_one_step_on_their_concatenation(k):
    x, y = batch(8 * k)
    accumulated, single = mlp(), mlp()
    before = params(single)
    micro = list(zip(x.chunk(k), y.chunk(k)))
    result_k = stepper(accumulated).step(micro, want_grad_norm=True, data_seconds=0.0)
    result_1 = stepper(single).step([(x, y)], want_grad_norm=True, data_seconds=0.0)

    for a, b, p0 in zip(accumulated.parameters(), single.parameters(), before):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert not torch.equal(b, p0)  # a real update happened
    torch.testing.assert_close(result_k.grad_norm, result_1.grad_norm, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(result_k.loss_sum, result_1.loss_sum, rtol=1e-5, atol=1e-5)
    assert (result_k.count, result_k.samples) == (result_1.count, result_1.samples) == (8 * k, 8 * k)
    assert int(result_k.correct) == int(result_1.correct)
    assert result_k.finite and result_1.finite


def test_step_returns_the_summed_loss_and_advances_the_schedule():
    model = mlp()
    x, y = batch(12)
    expected_mean = CrossEntropy()(model(x), y).item()
    s = stepper(model)
    result = s.step([(x[:6], y[:6]), (x[6:], y[6:])], want_grad_norm=False, data_seconds=0.25)
    assert result.loss_sum.item() == pytest.approx(expected_mean * 12, rel=1e-5)
    assert result.grad_norm is None  # not asked for, no clipping: no extra work
    assert s.scheduler.last_epoch == 1
    assert result.times["data_s"] == 0.25 and result.times["step_s"] >= 0.25


# ----------------------------------------------------------------------------- clipping
def test_clip_grad_norm_bounds_the_norm_and_reports_the_norm_before_clipping():
    model = mlp()
    x, y = batch(16)
    expected = reference_grads(model, x, y)
    before = params(model)
    result = stepper(model, lr=0.1, clip_grad_norm=0.05).step([(x, y)], want_grad_norm=True, data_seconds=0.0)
    assert result.grad_norm.item() == pytest.approx(total_norm(expected), rel=1e-5)
    assert result.grad_norm.item() > 0.05  # clipping had work to do
    assert total_norm(grads(model)) <= 0.05 * (1 + 1e-4)
    # Clipping scales, it does not change the direction, and the update used the clipped gradients.
    scale = 0.05 / total_norm(expected)
    for g, g_ref, p, p0 in zip(grads(model), expected, model.parameters(), before):
        torch.testing.assert_close(g, g_ref * scale, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(p.detach(), p0 - 0.1 * g, rtol=1e-5, atol=1e-7)


def test_clip_grad_norm_leaves_small_gradients_alone():
    model = mlp()
    x, y = batch(16)
    expected = reference_grads(model, x, y)
    stepper(model, clip_grad_norm=1e6).step([(x, y)], want_grad_norm=False, data_seconds=0.0)
    for g, g_ref in zip(grads(model), expected):
        torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-7)


def test_clip_grad_value_bounds_every_gradient_element():
    model = mlp()
    x, y = batch(16)
    expected = reference_grads(model, x, y)
    limit = 0.01
    assert max(g.abs().max().item() for g in expected) > limit  # clipping had work to do
    stepper(model, clip_grad_value=limit).step([(x, y)], want_grad_norm=False, data_seconds=0.0)
    for g, g_ref in zip(grads(model), expected):
        assert g.abs().max().item() <= limit
        torch.testing.assert_close(g, g_ref.clamp(-limit, limit), rtol=1e-5, atol=1e-7)


def test_clip_value_then_norm_bounds_both():
    model = mlp()
    x, y = batch(16)
    stepper(model, clip_grad_value=0.01, clip_grad_norm=0.02).step([(x, y)], want_grad_norm=True,
                                                                     data_seconds=0.0)
    assert total_norm(grads(model)) <= 0.02 * (1 + 1e-4)
    assert max(g.abs().max().item() for g in grads(model)) <= 0.01


# ----------------------------------------------------------------------------- non-finite
def nan_loss(loss):
    return loss * float("nan")


# torch warns when the schedule steps before any optimizer step; here that is the intended skip.
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before:UserWarning")
@pytest.mark.parametrize("want_grad_norm", [False, True])  # the cheap sentinel check, and the full norm
def test_a_non_finite_update_is_skipped_and_leaves_weights_and_optimizer_state_unchanged(want_grad_norm):
    model = mlp()
    before = params(model)
    s = stepper(model, optimizer="adam", lr=0.01)
    s.loss_hook = nan_loss
    result = s.step([batch(8)], want_grad_norm=want_grad_norm, data_seconds=0.0)
    assert result.finite is False
    if want_grad_norm:
        assert not torch.isfinite(result.grad_norm)
    for p, p0 in zip(model.parameters(), before):
        assert torch.equal(p.detach(), p0)
    assert s.optimizer.state_dict()["state"] == {}  # Adam did not count a step
    # The schedule still advances, so it stays aligned with the step counter the loop keeps.
    assert s.scheduler.last_epoch == 1

    # The next, finite step updates normally.
    s.loss_hook = None
    assert s.step([batch(8)], want_grad_norm=False, data_seconds=0.0).finite
    assert all(torch.isfinite(p).all() and not torch.equal(p.detach(), p0)
               for p, p0 in zip(model.parameters(), before))


def test_a_step_after_evaluation_trains_in_training_mode():
    model = models.build("mlp", (5,), 3, hidden_sizes=(16,), dropout=0.5)
    s = stepper(model)
    model.eval()  # what validation leaves behind
    s.step([batch(8)], want_grad_norm=False, data_seconds=0.0)
    assert all(m.training for m in model.modules()), "dropout and batch norm must be back in training mode"
