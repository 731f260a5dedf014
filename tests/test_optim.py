"""Optimizers and learning-rate schedules built from config."""

from __future__ import annotations


import pytest
import torch

from orchestrator import config as C
from orchestrator.components.optimizers import build_optimizer
from orchestrator.components.schedulers import build_scheduler, rebase_lr


# ----------------------------------------------------------------------------- schedules
def lr_factor(cfg, step, total, spe):
    """The multiplier of optimizer.lr before optimizer step ``step``, from the schedule the config builds."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return build_scheduler(cfg, optimizer, total_steps=total, steps_per_epoch=spe).lr_lambdas[0](step)


@pytest.mark.parametrize("cfg,step,total,spe,expected", [
    # constant
    (C.ConstantSchedulerConfig(), 0, 100, 10, 1.0),
    (C.ConstantSchedulerConfig(), 99, 100, 10, 1.0),
    # linear warm-up from (step + 1) / warmup_steps, reaching 1 on its last step
    (C.ConstantSchedulerConfig(warmup_steps=4), 0, 100, 10, 0.25),
    (C.ConstantSchedulerConfig(warmup_steps=4), 1, 100, 10, 0.5),
    (C.ConstantSchedulerConfig(warmup_steps=4), 3, 100, 10, 1.0),
    (C.ConstantSchedulerConfig(warmup_steps=4), 4, 100, 10, 1.0),
    # step decay by gamma every step_epochs epochs of spe steps
    (C.StepSchedulerConfig(step_epochs=2, gamma=0.5), 0, 100, 10, 1.0),
    (C.StepSchedulerConfig(step_epochs=2, gamma=0.5), 19, 100, 10, 1.0),
    (C.StepSchedulerConfig(step_epochs=2, gamma=0.5), 20, 100, 10, 0.5),
    (C.StepSchedulerConfig(step_epochs=2, gamma=0.5), 39, 100, 10, 0.5),
    (C.StepSchedulerConfig(step_epochs=2, gamma=0.5), 40, 100, 10, 0.25),
    (C.StepSchedulerConfig(step_epochs=1, gamma=0.1), 25, 100, 10, 0.01),
    (C.StepSchedulerConfig(step_epochs=2, gamma=0.5, warmup_steps=5), 0, 100, 10, 0.2),
    # cosine from 1 after warm-up down to min_lr_ratio at total_steps
    (C.CosineSchedulerConfig(warmup_steps=0, min_lr_ratio=0.0), 0, 100, 10, 1.0),
    (C.CosineSchedulerConfig(warmup_steps=0, min_lr_ratio=0.0), 50, 100, 10, 0.5),
    (C.CosineSchedulerConfig(warmup_steps=0, min_lr_ratio=0.0), 100, 100, 10, 0.0),
    (C.CosineSchedulerConfig(warmup_steps=10, min_lr_ratio=0.1), 0, 110, 10, 0.1),
    (C.CosineSchedulerConfig(warmup_steps=10, min_lr_ratio=0.1), 9, 110, 10, 1.0),
    (C.CosineSchedulerConfig(warmup_steps=10, min_lr_ratio=0.1), 10, 110, 10, 1.0),
    (C.CosineSchedulerConfig(warmup_steps=10, min_lr_ratio=0.1), 60, 110, 10, 0.55),
    (C.CosineSchedulerConfig(warmup_steps=10, min_lr_ratio=0.1), 110, 110, 10, 0.1),
    (C.CosineSchedulerConfig(warmup_steps=10, min_lr_ratio=0.1), 500, 110, 10, 0.1),  # stays at the floor
])
def test_lr_factor_table(cfg, step, total, spe, expected):
    assert lr_factor(cfg, step, total, spe) == pytest.approx(expected, abs=1e-12)


def test_cosine_decreases_monotonically_after_warmup():
    cfg = C.CosineSchedulerConfig(warmup_steps=5, min_lr_ratio=0.2)
    values = [lr_factor(cfg, s, 60, 6) for s in range(5, 61)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert values[0] == 1.0 and values[-1] == pytest.approx(0.2)
    assert all(0.2 <= v <= 1.0 for v in values)


def test_step_schedule_with_zero_steps_per_epoch_does_not_divide_by_zero():
    assert lr_factor(C.StepSchedulerConfig(step_epochs=2, gamma=0.5), 4, 10, 0) == 0.25


def test_a_schedule_that_cannot_be_imported_names_scheduler_target():
    with pytest.raises(C.ConfigError, match=r"scheduler\._target_"):
        lr_factor({"_target_": "orchestrator.components.schedulers.linear"}, 3, 10, 2)


def test_any_torch_scheduler_works_by_target():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler({"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": 2, "gamma": 0.5},
                                optimizer, total_steps=10, steps_per_epoch=5)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.25)


def test_scheduler_sets_the_optimizer_lr_from_lr_factor_at_every_step():
    cfg = C.CosineSchedulerConfig(warmup_steps=3, min_lr_ratio=0.1)
    optimizer = build_optimizer(C.SGDConfig(lr=0.2), [torch.nn.Parameter(torch.zeros(2))])
    scheduler = build_scheduler(cfg, optimizer, total_steps=12, steps_per_epoch=4)
    for step in range(14):
        # The LR used by optimizer step `step` (0-based).
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.2 * lr_factor(cfg, step, 12, 4))
        optimizer.step()
        scheduler.step()


# ----------------------------------------------------------------------------- optimizers
def params():
    return [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2, 2))]


@pytest.mark.parametrize("cfg,cls,expected", [
    (C.SGDConfig(lr=0.3, momentum=0.8, nesterov=True, weight_decay=1e-4), torch.optim.SGD,
     {"lr": 0.3, "momentum": 0.8, "nesterov": True, "weight_decay": 1e-4}),
    (C.SGDConfig(lr=0.1, momentum=0.0), torch.optim.SGD, {"lr": 0.1, "momentum": 0.0, "nesterov": False}),
    (C.AdamConfig(lr=0.002, betas=[0.8, 0.99], eps=1e-6, weight_decay=0.05), torch.optim.Adam,
     {"lr": 0.002, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.05}),
    (C.AdamWConfig(lr=0.003), torch.optim.AdamW, {"lr": 0.003, "betas": (0.9, 0.999), "weight_decay": 0.01}),
    (C.RMSPropConfig(lr=0.004, alpha=0.9, momentum=0.5, eps=1e-7), torch.optim.RMSprop,
     {"lr": 0.004, "alpha": 0.9, "momentum": 0.5, "eps": 1e-7, "weight_decay": 0.0}),
], ids=["sgd", "sgd-plain", "adam", "adamw", "rmsprop"])
def test_each_optimizer_name_builds_its_torch_class_with_the_configured_values(cfg, cls, expected):
    ps = params()
    optimizer = build_optimizer(cfg, ps)
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    for key, value in expected.items():
        assert group[key] == pytest.approx(value) if isinstance(value, float) else group[key] == value, key
    assert [id(p) for p in group["params"]] == [id(p) for p in ps]


def test_an_optimizer_that_cannot_be_imported_names_optimizer_target():
    with pytest.raises(C.ConfigError, match=r"optimizer\._target_.*Lion"):
        build_optimizer({"_target_": "torch.optim.Lion", "lr": 0.1}, params())


def test_any_torch_optimizer_works_by_target_and_clipping_is_not_passed_to_it():
    optimizer = build_optimizer({"_target_": "torch.optim.Adagrad", "lr": 0.05, "clip_grad_norm": 1.0}, params())
    assert type(optimizer) is torch.optim.Adagrad and optimizer.param_groups[0]["lr"] == 0.05


# ----------------------------------------------------------------------------- rebase
def test_rebase_lr_sets_base_and_current_lr_for_the_current_step():
    cfg = C.ConstantSchedulerConfig(warmup_steps=4)
    optimizer = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))]},
                                 {"params": [torch.nn.Parameter(torch.zeros(1))]}], lr=0.1)
    scheduler = build_scheduler(cfg, optimizer, total_steps=10, steps_per_epoch=5)
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.75)

    rebase_lr(scheduler, 0.02)
    assert scheduler.base_lrs == [0.02, 0.02]
    for group in optimizer.param_groups:
        assert group["initial_lr"] == 0.02
        assert group["lr"] == pytest.approx(0.02 * 0.75)
    optimizer.step()
    scheduler.step()  # the schedule continues from the new base
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.02, 0.02])


def test_rebase_lr_replaces_the_base_lr_a_restored_scheduler_carries():
    cfg = C.StepSchedulerConfig(step_epochs=1, gamma=0.5)
    old_opt = build_optimizer(C.SGDConfig(lr=0.4), params())
    old = build_scheduler(cfg, old_opt, total_steps=20, steps_per_epoch=3)
    for _ in range(4):
        old_opt.step()
        old.step()

    new_opt = build_optimizer(C.SGDConfig(lr=0.1), params())
    new = build_scheduler(cfg, new_opt, total_steps=20, steps_per_epoch=3)
    new.load_state_dict(old.state_dict())
    assert new.base_lrs == [0.4]  # the checkpoint's base, not this run's
    rebase_lr(new, 0.1)
    assert new.last_epoch == 4
    assert new_opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5)
    for _ in range(2):
        new_opt.step()
        new.step()
    assert new_opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.25)
