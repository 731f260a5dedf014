"""Training state: capture and restore round-trip everything needed to continue bit-exactly.

World size 1, no process group: ``capture`` gathers only this process's RNG state.
"""

from __future__ import annotations

import copy
import io
import pickle
import random

import pytest
import torch

import models
from orchestrator import config as C
from orchestrator.checkpoint import state as S
from orchestrator.components.optimizers import build_optimizer
from orchestrator.components.schedulers import build_scheduler

SCHEDULE = C.CosineSchedulerConfig(warmup_steps=2, min_lr_ratio=0.1)


def components(seed=0):
    torch.manual_seed(seed)
    model = models.build("mlp", (6,), 3, hidden_sizes=(8,), dropout=0.3)  # dropout: the RNG matters
    optimizer = build_optimizer(C.AdamConfig(lr=0.01), model.parameters())
    scheduler = build_scheduler(SCHEDULE, optimizer, total_steps=20, steps_per_epoch=5)
    return model, optimizer, scheduler


def train(model, optimizer, scheduler, steps):
    model.train()
    for _ in range(steps):
        x = torch.randn(4, 6)
        y = torch.randint(0, 3, (4,))
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        scheduler.step()


def train_state():
    return S.TrainState(step=3, epoch=1, step_in_epoch=1, samples_in_epoch=48,
                        monitors={"early_stopping": {"bad_evals": 2, "best": 0.3}},
                        last_val={"val/loss": 0.3, "val/accuracy": 0.9})


def test_round_trip_restores_weights_optimizer_schedule_counters_and_rng():
    model, optimizer, scheduler = components()
    train(model, optimizer, scheduler, 3)
    weights = copy.deepcopy(model.state_dict())
    adam = copy.deepcopy(optimizer.state_dict())
    data = S.capture(S.Trainables(model, optimizer, scheduler, None), train_state(), world_size=1)
    assert isinstance(data, bytes)
    torch_draw, python_draw = torch.rand(5), random.random()

    # A fresh process would build new components (other seed), then restore.
    model2, optimizer2, scheduler2 = components(seed=1)
    assert not torch.equal(model2.state_dict()["net.1.weight"], weights["net.1.weight"])
    restored = S.restore(S.load_payload(data), S.Trainables(model2, optimizer2, scheduler2, None),
                         rank=0, world_size=1, seed=0, attempt=0)

    assert restored == train_state()
    for key, value in weights.items():
        assert torch.equal(model2.state_dict()[key], value), key
    state2 = optimizer2.state_dict()
    assert state2["param_groups"] == adam["param_groups"]
    for pid, per_param in adam["state"].items():
        for key, value in per_param.items():
            assert torch.equal(state2["state"][pid][key], value), (pid, key)
    assert scheduler2.last_epoch == scheduler.last_epoch == 3
    assert optimizer2.param_groups[0]["lr"] == pytest.approx(optimizer.param_groups[0]["lr"])
    # The random streams continue from the capture point.
    assert torch.equal(torch.rand(5), torch_draw)
    assert random.random() == python_draw


def test_training_on_after_restore_is_bit_identical_to_training_on_without_it():
    model, optimizer, scheduler = components()
    train(model, optimizer, scheduler, 2)
    data = S.capture(S.Trainables(model, optimizer, scheduler, None), S.TrainState(step=2), world_size=1)
    train(model, optimizer, scheduler, 4)  # uninterrupted: dropout masks and batches from the RNG

    model2, optimizer2, scheduler2 = components(seed=123)
    S.restore(S.load_payload(data), S.Trainables(model2, optimizer2, scheduler2, None), 0, 1, 0, 0)
    train(model2, optimizer2, scheduler2, 4)
    for (name, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), name


def test_python_gauss_stream_continues_after_restore():
    # random.gauss() draws values in pairs and caches the second one in the generator's state.
    model, optimizer, scheduler = components()
    random.seed(3)
    random.gauss(0.0, 1.0)
    data = S.capture(S.Trainables(model, optimizer, scheduler, None), S.TrainState(), world_size=1)
    expected = [random.gauss(0.0, 1.0) for _ in range(3)]
    random.seed(99)
    S.restore(S.load_payload(data), S.Trainables(model, optimizer, scheduler, None), 0, 1, 0, 0)
    assert [random.gauss(0.0, 1.0) for _ in range(3)] == expected


def test_payload_records_format_and_world_size_but_not_the_config():
    model, optimizer, scheduler = components()
    data = S.capture(S.Trainables(model, optimizer, scheduler, None), S.TrainState(), world_size=1)
    payload = S.load_payload(data)
    assert payload["format_version"] == S.FORMAT_VERSION
    assert payload["world_size"] == 1
    assert "config" not in payload  # the run dir's config.yaml: no round trip through the workers
    assert len(payload["rng"]) == 1  # one RNG state per rank


def test_grad_scaler_state_round_trips():
    model, optimizer, scheduler = components()
    scaler = torch.amp.GradScaler("cpu", init_scale=512.0, growth_interval=7)
    data = S.capture(S.Trainables(model, optimizer, scheduler, scaler), S.TrainState(), world_size=1)
    scaler2 = torch.amp.GradScaler("cpu")
    model2, optimizer2, scheduler2 = components()
    S.restore(S.load_payload(data), S.Trainables(model2, optimizer2, scheduler2, scaler2), 0, 1, 0, 0)
    assert scaler2.get_scale() == 512.0
    assert scaler2.get_growth_interval() == 7


def test_restore_with_another_world_size_seeds_fresh_reproducible_streams():
    model, optimizer, scheduler = components()
    data = S.capture(S.Trainables(model, optimizer, scheduler, None), S.TrainState(), world_size=1)
    payload = S.load_payload(data)
    payload["world_size"] = 2  # as if captured by a larger gang
    payload["rng"] = payload["rng"] * 2
    draws = []
    for _ in range(2):
        model2, optimizer2, scheduler2 = components(seed=5)
        torch.manual_seed(42)
        S.restore(payload, S.Trainables(model2, optimizer2, scheduler2, None), rank=0, world_size=1, seed=7, attempt=1)
        draws.append(torch.rand(3))
    torch.manual_seed(42)
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], torch.rand(3))


def test_rng_states_load_on_the_cpu_whatever_device_trains():
    model, optimizer, scheduler = components()
    data = S.capture(S.Trainables(model, optimizer, scheduler, None), S.TrainState(), world_size=1)
    payload = S.load_payload(data)  # no device argument: torch.set_rng_state takes CPU tensors only
    assert payload["rng"][0]["torch"].device.type == "cpu"
    S.set_rng_state(payload["rng"][0])


def test_the_best_model_travels_in_the_checkpoint():
    model, optimizer, scheduler = components()
    best = {k: v.clone() + 1 for k, v in model.state_dict().items()}
    payload = S.load_payload(S.capture(S.Trainables(model, optimizer, scheduler, None), S.TrainState(), world_size=1, best_model=best))
    assert all(torch.equal(payload["best_model"][k], v) for k, v in best.items())


# ----------------------------------------------------------------------------- weights_only
UNPICKLED = []


def record_unpickling(tag):
    UNPICKLED.append(tag)
    return tag


class Gadget:
    """Any object whose unpickling runs code."""

    def __reduce__(self):
        return record_unpickling, ("code ran",)


def test_load_payload_refuses_arbitrary_python_objects():
    UNPICKLED.clear()
    buffer = io.BytesIO()
    torch.save({"format_version": 1, "model": {}, "extra": Gadget()}, buffer)
    with pytest.raises(pickle.UnpicklingError, match="[Ww]eights only"):
        S.load_payload(buffer.getvalue())
    assert UNPICKLED == []
    # The same bytes do run code under a plain (unsafe) load: the refusal above is what protects.
    torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    assert UNPICKLED == ["code ran"]
