"""What a metrics flush logs about the ranks: a tag per rank for small gangs, a bounded summary above
trainer.per_rank_metrics_up_to (pure functions, fake flushes of up to 256 ranks)."""

from __future__ import annotations

import pytest

from orchestrator import config as C
from orchestrator.config import ConfigError
from orchestrator.worker.rank_metrics import quantile, rank_scalars, slowest
from orchestrator.worker.stats import Flush, flush_scalars
from tests.helpers import compose


def fake_per_rank(world: int, straggler: int = -1, waiting: int = -1):
    """Rank r steps in 10 + r/100 ms, 1 ms of it waiting for data; a straggler takes 50 ms, a waiting rank 8 ms in data."""
    step = [0.010 + r / 100_000 for r in range(world)]
    data = [0.001] * world
    if straggler >= 0:
        step[straggler] = 0.050
    if waiting >= 0:
        data[waiting] = 0.008
    return {"data_s": data, "compute_s": [s * 0.6 for s in step], "optimizer_s": [s * 0.1 for s in step],
            "step_s": step}


@pytest.mark.parametrize("values,q,expected", [
    ([1.0], 0.9, 1.0),
    ([1.0, 2.0], 0.5, 1.5),
    ([1.0, 2.0, 3.0, 4.0, 5.0], 0.5, 3.0),
    ([1.0, 2.0, 3.0, 4.0, 5.0], 0.9, 4.6),       # numpy.quantile's default (linear)
    ([float(i) for i in range(11)], 0.9, 9.0),
    ([3.0, 7.0], 0.0, 3.0),
    ([3.0, 7.0], 1.0, 7.0),
])
def test_quantile_interpolates_between_the_closest_ranks(values, q, expected):
    assert quantile(values, q) == pytest.approx(expected)


@pytest.mark.parametrize("step_ms,count,expected", [
    ([5.0, 9.0, 7.0, 9.0], 3, [1, 3, 2]),   # ties: the lower rank first
    ([1.0], 3, [0]),
    ([4.0, 3.0, 2.0, 1.0], 2, [0, 1]),
])
def test_slowest_ranks_come_first(step_ms, count, expected):
    assert slowest(step_ms, count) == expected


def test_up_to_the_threshold_every_rank_has_its_own_tags():
    values = rank_scalars(fake_per_rank(16), per_rank_up_to=16)
    assert len(values) == 16 * 5  # four phases and the data wait
    assert values["worker/15/step_ms"] == pytest.approx(10.15)
    assert values["worker/3/data_wait_pct"] == pytest.approx(100 * 0.001 / 0.01003)
    assert not any(key.startswith("workers/") for key in values)


def test_above_the_threshold_the_distribution_and_the_slowest_ranks_replace_them():
    values = rank_scalars(fake_per_rank(256, straggler=77, waiting=200), per_rank_up_to=16)
    assert not any(key.startswith("worker/") for key in values)
    assert values["workers/step_ms/max"] == pytest.approx(50.0)
    assert values["workers/step_ms/min"] == pytest.approx(10.0)
    assert values["workers/step_ms/median"] == pytest.approx(10.0 + 128.5 / 100)  # ranks 128 and 129 (77 is the max)
    assert values["workers/slowest_rank"] == 77.0
    assert (values["workers/slowest_rank_2"], values["workers/slowest_rank_3"]) == (255.0, 254.0)
    assert values["workers/most_waiting_rank"] == 200.0
    assert values["workers/data_wait_pct/max"] == pytest.approx(100 * 0.008 / (0.010 + 200 / 100_000))
    assert values["workers/data_wait_pct/min"] == pytest.approx(100 * 0.001 / 0.050)  # the straggler's share


@pytest.mark.parametrize("world", [17, 32, 64, 256, 1024])
def test_the_tag_count_does_not_grow_with_the_world_size(world):
    flush = Flush(per_rank=fake_per_rank(world, straggler=world - 1), grad_norm=1.0)
    keys = set(flush_scalars(flush, samples_per_step=64, per_rank_up_to=16))
    assert keys == set(flush_scalars(Flush(per_rank=fake_per_rank(17), grad_norm=1.0), 64, 16))
    assert len(keys) == 2 + 4 + 4 + 3 + 1  # global batch, grad norm, two distributions, 3 slowest, most waiting


def test_ranks_without_a_step_are_left_out_of_the_data_wait():
    per_rank = fake_per_rank(20)
    per_rank["step_s"][4] = 0.0
    values = rank_scalars(per_rank, per_rank_up_to=16)
    assert values["workers/data_wait_pct/max"] == pytest.approx(100 * 0.001 / 0.010)  # rank 4's 0 s step: no share
    assert rank_scalars({}, per_rank_up_to=16) == {}  # another rank than 0: nothing gathered, nothing logged


def test_zero_means_always_the_summary():
    assert set(rank_scalars(fake_per_rank(2), per_rank_up_to=0)) >= {"workers/step_ms/p90", "workers/slowest_rank"}


def test_the_threshold_is_a_checked_config_key():
    assert compose().trainer.per_rank_metrics_up_to == 16
    assert compose("trainer.per_rank_metrics_up_to=4").trainer.per_rank_metrics_up_to == 4
    with pytest.raises(ConfigError, match=r"^trainer\.per_rank_metrics_up_to must"):
        C.TrainerConfig(per_rank_metrics_up_to=-1)
