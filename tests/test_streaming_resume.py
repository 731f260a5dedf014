"""A stream stopped mid-epoch and resumed from its checkpoint trains exactly as the uninterrupted
run: the same weights, bit for bit, on two real gloo ranks (the training loop itself, no Ray). A
resume into another layout starts the epoch again and says so."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from orchestrator import config as C
from orchestrator.checkpoint import state as S
from orchestrator.components import registry
from orchestrator.data import generate as G
from orchestrator.data.module import data_module
from orchestrator.policy.plan import AttemptPlan
from orchestrator.records import CheckpointRecord, EventRecord
from orchestrator.worker import loop
from orchestrator.worker.build import build
from orchestrator.worker.reporting import Reporter
from tests.gloo import run_ranks

BATCH = 16


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    images, labels = G.digits()
    return G.write_parquet(tmp_path_factory.mktemp("pq") / "pq", images[:640] / 255.0, labels[:640], 80,
                           row_group=32, vector_column=True)


def stream_config(path, workers: int, steps: int) -> C.Config:
    return C.Config(
        model=C.MLPConfig(hidden_sizes=[16], dropout=0.0),
        data=C.ParquetConfig(path=str(path), features=["x"], batch_size=BATCH, num_workers=workers,
                             val_fraction=0.0, shuffle_block=24),
        optimizer=C.SGDConfig(lr=0.1, momentum=0.9),
        scheduler=C.ConstantSchedulerConfig(),
        scaling=C.ScalingConfig(num_workers=2),
        trainer=C.TrainerConfig(max_steps=steps, max_epochs=10, log_every_n_steps=4),
        checkpoint=C.CheckpointConfig(every_epoch=False),
    )


def fit(cfg, rank, world, payload=None):
    data = data_module(registry.spec(cfg, "data"), cfg.trainer.seed)
    data.check()
    components = build(cfg, data, AttemptPlan(attempt=0, world_size=world, accumulate=1), rank, torch.device("cpu"))
    state = None
    if payload is not None:
        state = S.restore(payload, components.trainables, rank, world, cfg.trainer.seed, attempt=1)
    reporter = Reporter(rank, keeps_records=rank == 0)
    loop.fit(components, reporter, state)
    return components, reporter.drain()


def stop_and_resume(rank, world, cfg_whole, cfg_first, resume_world_cfg=None):
    whole, _ = fit(cfg_whole, rank, world)
    _, records = fit(cfg_first, rank, world)
    checkpoint = [r for r in records if isinstance(r, CheckpointRecord)]
    box = [torch.load(__import__("io").BytesIO(checkpoint[-1].payload), weights_only=True) if rank == 0 else None]
    torch.distributed.broadcast_object_list(box, src=0)
    resumed, records = fit(cfg_whole, rank, world, payload=box[0])
    weights = lambda c: {k: v.clone() for k, v in c.module.state_dict().items()}  # noqa: E731
    return {"whole": weights(whole), "resumed": weights(resumed), "position": box[0]["train_state"],
            "events": [r for r in records if isinstance(r, EventRecord)]}


# With DataLoader worker processes the stream's resume is checked in test_streaming.py (reader level).
@pytest.mark.parametrize("workers", [0])
def test_a_stream_resumed_mid_epoch_ends_with_the_uninterrupted_weights(shards, workers):
    # 640 samples, 2 ranks x 16: 20 steps an epoch. Stop at step 23 (in the second epoch), go on to 30.
    ranks = run_ranks(2, stop_and_resume, stream_config(shards, workers, 30), stream_config(shards, workers, 23))
    position = ranks[0]["position"]
    assert (position["epoch"], position["step_in_epoch"]) == (1, 3)
    assert position["data_position"]["batches"] == 3 and len(position["data_position"]["readers"]) == 2 * max(1, workers)
    for rank in ranks:
        for key, value in rank["whole"].items():
            assert torch.equal(value, rank["resumed"][key]), key
    assert not [e for e in ranks[0]["events"] if e.kind == "data_resume"]


def test_a_resume_into_another_layout_starts_the_epoch_again_and_says_so(shards):
    first, whole = stream_config(shards, 0, 23), stream_config(shards, 0, 26)
    other = dataclasses.replace(whole, data=dataclasses.replace(whole.data, batch_size=8))
    ranks = run_ranks(2, stop_and_resume, other, first)
    events = [e for e in ranks[0]["events"] if e.kind == "data_resume"]
    assert len(events) == 1 and "start of epoch 2" in events[0].message and "batch 16" in events[0].message
    assert np.isfinite(sum(float(v.sum()) for v in ranks[0]["resumed"].values()))
