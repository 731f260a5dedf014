"""Attempt plans: gang size, accumulation and LR scale when an elastic run continues smaller."""

from __future__ import annotations

import pytest

from orchestrator import config as C
from orchestrator.policy.plan import AttemptPlan, elastic_sizes, plan_attempt


def make_config(num_workers=4, accumulate=1, min_workers=None, elastic_batch="keep_global_batch") -> C.Config:
    return C.Config(model=C.MLPConfig(), data=C.DigitsConfig(batch_size=32), optimizer=C.SGDConfig(),
                    scheduler=C.ConstantSchedulerConfig(),
                    trainer=C.TrainerConfig(accumulate_grad_batches=accumulate),
                    scaling=C.ScalingConfig(num_workers=num_workers, min_workers=min_workers),
                    failure=C.FailureConfig(elastic_batch=elastic_batch))


@pytest.mark.parametrize("elastic_batch", ["keep_global_batch", "scale_lr"])
@pytest.mark.parametrize("accumulate", [1, 3])
def test_full_size_gang_runs_as_configured(elastic_batch, accumulate):
    cfg = make_config(num_workers=4, accumulate=accumulate, elastic_batch=elastic_batch)
    assert plan_attempt(cfg, 2, 4) == AttemptPlan(attempt=2, world_size=4, accumulate=accumulate, lr_scale=1.0)


@pytest.mark.parametrize("num_workers,accumulate,world,expected_accumulate", [
    (4, 1, 2, 2),
    (4, 1, 1, 4),
    (4, 2, 2, 4),
    (6, 1, 3, 2),
    (6, 2, 4, 3),
])
def test_keep_global_batch_accumulates_more_when_divisible(num_workers, accumulate, world, expected_accumulate):
    cfg = make_config(num_workers, accumulate, min_workers=1)
    plan = plan_attempt(cfg, 1, world)
    assert (plan.world_size, plan.accumulate, plan.lr_scale) == (world, expected_accumulate, 1.0)
    assert cfg.data.batch_size * world * plan.accumulate == C.global_batch_size(cfg)  # the same global batch


@pytest.mark.parametrize("num_workers,accumulate,world,expected_accumulate,expected_scale", [
    (4, 1, 3, 1, 3 / 4),
    (4, 2, 3, 2, 6 / 8),
    (3, 1, 2, 1, 2 / 3),
    (5, 2, 3, 3, 9 / 10),
    (5, 1, 2, 2, 4 / 5),
])
def test_keep_global_batch_not_divisible_keeps_the_nearest_smaller_batch_and_scales_lr(
        num_workers, accumulate, world, expected_accumulate, expected_scale):
    plan = plan_attempt(make_config(num_workers, accumulate, min_workers=1), 1, world)
    assert plan.accumulate == expected_accumulate
    assert plan.lr_scale == pytest.approx(expected_scale)
    # The LR follows the batch actually kept (linear rule), which is never larger than the configured one.
    assert plan.lr_scale == pytest.approx(world * plan.accumulate / (num_workers * accumulate))
    assert world * plan.accumulate <= num_workers * accumulate


@pytest.mark.parametrize("num_workers,accumulate,world", [(4, 1, 3), (4, 2, 2), (8, 3, 5)])
def test_scale_lr_keeps_the_per_step_batch_and_scales_lr_linearly(num_workers, accumulate, world):
    plan = plan_attempt(make_config(num_workers, accumulate, min_workers=1, elastic_batch="scale_lr"), 1, world)
    assert plan.accumulate == accumulate
    assert plan.lr_scale == pytest.approx(world / num_workers)


@pytest.mark.parametrize("num_workers,min_workers,expected", [
    (4, None, [4]),
    (4, 4, [4]),
    (4, 2, [4, 3, 2]),
    (3, 1, [3, 2, 1]),
    (1, None, [1]),
])
def test_elastic_sizes_largest_first_down_to_min_workers(num_workers, min_workers, expected):
    assert list(elastic_sizes(make_config(num_workers, min_workers=min_workers))) == expected
