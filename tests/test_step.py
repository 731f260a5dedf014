"""One optimizer step without DDP: accumulation, clipping and skipping non-finite updates."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import models
from orchestrator import config as C
from orchestrator.components.losses import CrossEntropy
from orchestrator.components.steps import SupervisedStep
from orchestrator.components.schedulers import build_scheduler
from orchestrator.checkpoint.state import Trainables
from orchestrator.worker.step import StepSettings, Stepper

CPU = torch.device("cpu")


def mlp(seed=0):
    torch.manual_seed(seed)
    return models.build("mlp", (5,), 3, hidden_sizes=(16,))  # no dropout or batch norm: deterministic


def stepper(model, optimizer="sgd", lr=0.1, fused=None, momentum=0.0, **options) -> Stepper:
    opt = (torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, fused=fused) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=lr, fused=fused))
    scheduler = build_scheduler(C.ConstantSchedulerConfig(), opt, total_steps=10, steps_per_epoch=10)
    scaler = options.pop("scaler", None)
    return Stepper(model, Trainables(model, opt, scheduler, scaler), SupervisedStep(CrossEntropy(), "cross_entropy"),
                   StepSettings(CPU, **options))


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
@pytest.mark.parametrize("want_grad_norm", [False, True])  # the cheap check, and the full norm
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


# ----------------------------------------------------------------------------- a NaN inside backward
def poison_hidden_gradient(model, value=float("nan")):
    """A non-finite value that arises in backward in the first hidden layer's weight gradient only
    (the output layer's gradients stay finite): what the old one-tensor check missed."""
    hidden = next(model.parameters())  # net.1.weight, a leaf: the hook changes only its own gradient

    def hook(grad):
        grad = grad.clone()
        grad[0, 0] = value
        return grad
    return hidden.register_hook(hook)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before:UserWarning")
@pytest.mark.parametrize("want_grad_norm", [False, True])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("fused", [None, True])  # gated on the host, and skipped on the device
def test_a_non_finite_hidden_layer_gradient_is_caught_and_the_update_not_applied(want_grad_norm, value, fused):
    model = mlp()
    s = stepper(model, optimizer="adam", lr=0.01, fused=fused)
    s.step([batch(8, seed=5)], want_grad_norm=False, data_seconds=0.0)  # a first, good update (state exists)
    before = params(model)
    state = copy.deepcopy(s.optimizer.state_dict()["state"])
    handle = poison_hidden_gradient(model, value)
    result = s.step([batch(8)], want_grad_norm=want_grad_norm, data_seconds=0.0)
    handle.remove()
    assert torch.isfinite(model.net[-1].bias.grad).all(), "the poison must not reach the output layer"
    assert result.finite is False
    for p, p0 in zip(model.parameters(), before):
        assert torch.equal(p.detach(), p0)
    after = s.optimizer.state_dict()["state"]
    for index, values in state.items():
        for key, tensor in values.items():
            assert torch.equal(after[index][key], tensor), f"optimizer state {key} changed"


# ----------------------------------------------------------------------------- no host sync (GPU hot path)
HOST_SYNC_OPS = ("_local_scalar_dense", "is_nonzero", "item")  # what .item() and bool(tensor) dispatch to


class HostSyncs(TorchDispatchMode):
    """Counts the ops that copy a tensor's value to the host: on a GPU each one waits for the device."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if any(name in str(func) for name in HOST_SYNC_OPS):
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_fused_optimizer_step_has_no_host_sync_and_the_flag_is_read_later(optimizer):
    model = mlp()
    s = stepper(model, optimizer=optimizer, lr=0.01, fused=True, momentum=0.9 if optimizer == "sgd" else 0.0)
    s.step([batch(8, seed=5)], want_grad_norm=False, data_seconds=0.0)  # the first update is gated on the host
    with HostSyncs() as syncs:
        good = s.step([batch(8)], want_grad_norm=False, data_seconds=0.0)
    assert syncs.seen == []
    assert good.finite  # read here, outside the step (the loop can read it at its next flush)
    handle = poison_hidden_gradient(model)
    with HostSyncs() as syncs:
        bad = s.step([batch(8, seed=2)], want_grad_norm=False, data_seconds=0.0)
    handle.remove()
    assert syncs.seen == [] and bad.finite is False


def test_a_non_fused_optimizer_step_syncs_once_to_gate_its_update():
    s = stepper(mlp(), optimizer="sgd", lr=0.01)  # plain SGD reads nothing on the host itself (Adam on CPU does)
    with HostSyncs() as syncs:
        s.step([batch(8)], want_grad_norm=False, data_seconds=0.0)
    assert len(syncs.seen) == 1  # the finite flag, read before the update it gates


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before:UserWarning")
def test_a_skipped_first_update_of_fused_sgd_with_momentum_leaves_no_garbage_momentum():
    # torch 2.13's fused SGD leaves new momentum buffers uninitialised when found_inf skips the first
    # update; the stepper gates that first update on the host, so the run equals one without the bad step.
    reference, poisoned = mlp(), mlp()
    a = stepper(reference, lr=0.1, fused=True, momentum=0.9)
    b = stepper(poisoned, lr=0.1, fused=True, momentum=0.9)
    handle = poison_hidden_gradient(poisoned)
    assert b.step([batch(8, seed=9)], want_grad_norm=False, data_seconds=0.0).finite is False
    handle.remove()
    for seed in (2, 3):
        a.step([batch(8, seed=seed)], want_grad_norm=False, data_seconds=0.0)
        b.step([batch(8, seed=seed)], want_grad_norm=False, data_seconds=0.0)
    for p, q in zip(reference.parameters(), poisoned.parameters()):
        torch.testing.assert_close(p, q)


# ----------------------------------------------------------------------------- fp16 loss scaler
def scaler_stepper(model):
    return stepper(model, optimizer="adam", lr=0.01, scaler=torch.amp.GradScaler("cpu", init_scale=2.0**16))


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before:UserWarning")
def test_with_a_loss_scaler_a_non_finite_loss_is_a_non_finite_step():
    # Before: with a scaler the step always reported finite, so health.nan_policy=skip never stopped.
    model = mlp()
    before = params(model)
    s = scaler_stepper(model)
    s.loss_hook = nan_loss
    result = s.step([batch(8)], want_grad_norm=False, data_seconds=0.0)
    assert result.finite is False
    assert all(torch.equal(p.detach(), p0) for p, p0 in zip(model.parameters(), before))
    assert s.scaler.get_scale() == 2.0**15  # the scaler still backed off, as it does on any skip


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before:UserWarning")
def test_with_a_loss_scaler_an_overflow_of_a_finite_loss_is_routine_not_non_finite():
    model = mlp()
    before = params(model)
    s = scaler_stepper(model)
    s.loss_hook = lambda loss: loss * 1e35  # finite, but times the scale it overflows float32 in backward
    result = s.step([batch(8)], want_grad_norm=False, data_seconds=0.0)
    assert torch.isfinite(result.loss_sum)
    assert result.finite  # the scaler's business: it skipped the update and lowered the scale
    assert all(torch.equal(p.detach(), p0) for p, p0 in zip(model.parameters(), before))
    assert s.scaler.get_scale() == 2.0**15
