"""DDP on real gloo process groups (no Ray): the data-parallel maths is right.

Two workers with per-worker batch b must end with the same weights as one
worker with batch 2b over the same samples; accumulation over k micro-batches
must equal one step on the k-times larger batch.
"""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch

from orchestrator import config as C
from orchestrator.config import ConfigError
from orchestrator.worker import loop
from orchestrator.components import registry
from orchestrator.data.module import data_module
from orchestrator.worker.build import build
from orchestrator.policy.plan import AttemptPlan
from orchestrator.records import CheckpointRecord, MetricsRecord
from orchestrator.worker.reporting import Reporter
from tests.gloo import run_ranks
from tests.helpers import compose


def mlp_config(batch_size: int, world: int, accumulate: int = 1, steps: int = 6) -> C.Config:
    return C.Config(
        model=C.MLPConfig(hidden_sizes=[32, 16], dropout=0.0),  # no dropout/BN: exact equivalence
        data=C.SyntheticClassificationConfig(num_samples=512, num_features=20, num_classes=3, batch_size=batch_size,
                                             val_fraction=0.0),
        optimizer=C.SGDConfig(lr=0.1, momentum=0.9),
        scheduler=C.ConstantSchedulerConfig(),
        scaling=C.ScalingConfig(num_workers=world),
        trainer=C.TrainerConfig(max_steps=steps, max_epochs=5, log_every_n_steps=2,
                                accumulate_grad_batches=accumulate),
        checkpoint=C.CheckpointConfig(every_epoch=False),
    )


def train_and_return_weights(rank: int, world: int, cfg: C.Config):
    data = data_module(registry.spec(cfg, "data"), cfg.trainer.seed)
    data.prepare()
    plan = AttemptPlan(attempt=0, world_size=world, accumulate=cfg.trainer.accumulate_grad_batches)
    components = build(cfg, data, plan, rank, torch.device("cpu"))
    reporter = Reporter(rank, keeps_records=rank == 0)
    result = loop.fit(components, reporter)
    weights = {k: v.clone() for k, v in components.module.state_dict().items()}
    records = reporter.drain()
    return {"weights": weights, "result": result, "records": records}


def assert_same_weights(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=atol, rtol=1e-5), f"{key} differs by {(a[key] - b[key]).abs().max()}"


@pytest.fixture(scope="module")
def two_workers():
    return run_ranks(2, train_and_return_weights, mlp_config(batch_size=16, world=2))


def test_two_workers_batch_b_equal_one_worker_batch_2b(two_workers):
    two = two_workers
    one = run_ranks(1, train_and_return_weights, mlp_config(batch_size=32, world=1))
    assert_same_weights(two[0]["weights"], two[1]["weights"], atol=0)  # replicas stay identical
    assert_same_weights(two[0]["weights"], one[0]["weights"])
    assert two[0]["result"].step == one[0]["result"].step == 6


def test_accumulation_equals_the_larger_batch_on_two_workers():
    accumulated = run_ranks(2, train_and_return_weights, mlp_config(batch_size=8, world=2, accumulate=4))
    large = run_ranks(2, train_and_return_weights, mlp_config(batch_size=32, world=2, accumulate=1))
    assert_same_weights(accumulated[0]["weights"], large[0]["weights"])


def test_metrics_are_reduced_across_ranks_and_reported_by_rank_zero_only(two_workers):
    ranks = two_workers
    metrics = [r for r in ranks[0]["records"] if isinstance(r, MetricsRecord) and "train/loss" in r.values]
    assert [m.step for m in metrics] == [1, 2, 4, 6]
    values = metrics[-1].values
    # Per-worker timings come from every rank, gathered by the reduction.
    assert {"worker/0/step_ms", "worker/1/step_ms", "worker/0/data_ms", "worker/1/data_ms"} <= values.keys()
    assert values["train/loss_max_rank"] >= values["train/loss"] > 0
    assert values["train/global_batch"] == 32
    assert ranks[1]["records"] == []  # the null object on rank 1 keeps nothing


def test_final_checkpoint_holds_every_ranks_rng_state(two_workers):
    ranks = two_workers
    checkpoints = [r for r in ranks[0]["records"] if isinstance(r, CheckpointRecord)]
    assert checkpoints and checkpoints[-1].step == 6
    payload = torch.load(io.BytesIO(checkpoints[-1].payload), weights_only=True)
    assert payload["world_size"] == 2 and len(payload["rng"]) == 2
    assert not torch.equal(payload["rng"][0]["torch"], payload["rng"][1]["torch"])  # distinct per-rank streams
    assert payload["train_state"]["step"] == 6


# ----------------------------------------------------------------------------- batch norm (model.sync_batchnorm)
def bn_config(batch_size: int, world: int) -> C.Config:
    cfg = mlp_config(batch_size, world)
    return dataclasses.replace(cfg, model=C.MLPConfig(hidden_sizes=[32, 16], dropout=0.0, batch_norm=True))


def test_with_batch_norm_two_workers_do_not_equal_the_large_batch():
    # Each rank normalises with its own batch's statistics: why model.sync_batchnorm exists (on GPUs).
    two = run_ranks(2, train_and_return_weights, bn_config(batch_size=16, world=2))
    one = run_ranks(1, train_and_return_weights, bn_config(batch_size=32, world=1))
    with pytest.raises(AssertionError, match="differs"):
        assert_same_weights(two[0]["weights"], one[0]["weights"], atol=1e-4)


def sync_batchnorm_forward(rank: int, world: int):
    layer = torch.nn.SyncBatchNorm.convert_sync_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm1d(4)))
    try:
        layer(torch.randn(8, 4))
    except ValueError as err:
        return str(err)
    return None


def test_torch_sync_batchnorm_refuses_cpu_tensors_on_gloo():
    # The fact behind the config check: if a torch release supports it, this fails and the check
    # in config/root.py (check_devices) can go, with a test that sync_batchnorm equals the large batch.
    errors = run_ranks(2, sync_batchnorm_forward)
    assert all(e and "SyncBatchNorm expected input tensor to be on GPU" in e for e in errors)


def test_sync_batchnorm_on_cpu_workers_fails_at_composition_naming_the_key():
    with pytest.raises(ConfigError, match=r"model\.sync_batchnorm needs GPU workers"):
        compose("model=cnn", "model.sync_batchnorm=true")
    cfg = compose("model=cnn", "model.sync_batchnorm=true", "cluster=gpu")  # accepted for GPU workers
    assert cfg.model.sync_batchnorm is True
