"""User components for the tests: a model that needs an argument, datasets, step functions."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.data import TensorDataset


class TinyNet(nn.Module):
    """Names num_outputs (filled in from the data) and needs depth (from the config)."""

    def __init__(self, num_outputs: int, depth: int, width: int = 16):
        super().__init__()
        layers = [nn.Flatten(), nn.Linear(64, width), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(width, num_outputs))

    def forward(self, x):
        return self.net(x)


def blobs(num_rows: int = 512, seed: int = 0):
    """Two Gaussian blobs in 64 dimensions, as plain TensorDatasets (train, val)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (num_rows,), generator=g)
    x = torch.randn(num_rows, 64, generator=g) + 2.0 * y[:, None].float()
    train = TensorDataset(x[: num_rows * 3 // 4], y[: num_rows * 3 // 4])
    train.num_classes = 2
    return train, TensorDataset(x[num_rows * 3 // 4:], y[num_rows * 3 // 4:])


def broken_dataset(num_rows: int = 10):
    raise RuntimeError("the bucket is not reachable")


def dict_blobs(num_rows: int = 512, seed: int = 0):
    train, val = blobs(num_rows, seed)
    as_dicts = [{"features": x, "label": y} for x, y in train]
    return {"train": as_dicts, "val": [{"features": x, "label": y} for x, y in val]}


def dict_step(model, batch):
    logits = model(batch["features"])
    loss = nn.functional.cross_entropy(logits, batch["label"])
    return {"loss": loss, "hit_rate": (logits.argmax(1) == batch["label"]).float().mean()}


def no_loss_step(model, batch):
    return {"hit_rate": torch.tensor(1.0)}


from orchestrator.policy.outcomes import StopKind  # noqa: E402
from orchestrator.worker.callbacks import Callback  # noqa: E402


class StopAfter(Callback):
    """A user's callback: counts the hooks it sees, reports them, and ends the run at a step."""

    state_key = "stop_after"

    def __init__(self, step: int):
        self.at = step
        self.seen = {"steps": 0, "validations": 0}

    def on_step_end(self, loop, step, result):
        self.seen["steps"] += 1
        if step >= self.at:
            loop.stop(StopKind.CALLBACK, f"StopAfter reached step {step}")

    def on_validation_end(self, loop, step, metrics, train):
        self.seen["validations"] += 1
        assert "val/loss" in metrics

    def on_fit_end(self, loop):
        loop.r.metrics(loop.state.step, {f"user/{k}": float(v) for k, v in self.seen.items()})
        return {}

    def state_dict(self):
        return dict(self.seen)

    def load_state_dict(self, state):
        self.seen = dict(state)


def unlabelled_blobs(num_rows: int = 64):
    """Like blobs, but the dataset does not say how many classes there are."""
    train, val = blobs(num_rows)
    del train.num_classes
    return train, val
def slow_blobs(delay_s: float, num_rows: int = 512):
    """Blobs after a long fetch (e.g. from a bucket): longer than a short hang timeout, yet no hang."""
    import time

    time.sleep(delay_s)
    return blobs(num_rows)


def stuck_blobs(num_rows: int = 512):
    """A fetch that never returns (a dead mount): the worker is killed when its gang is released."""
    import time

    while True:
        time.sleep(1.0)


from orchestrator.policy.failure import Action, Decision  # noqa: E402


class NeverRestart:
    """A user's failure policy: any failure ends the run (e.g. for a debugging session)."""

    def __init__(self, reason: str = "debugging: no restarts"):
        self.reason = reason

    def decide(self, failure, history):
        return Decision(Action.RAISE, self.reason)


class SleepyDataset(torch.utils.data.Dataset):
    """Each sample takes a while to read (a slow disk or bucket): the run is input-bound."""

    def __init__(self, inner, delay_s: float):
        self.inner, self.delay_s = inner, delay_s
        self.num_classes = getattr(inner, "num_classes", None)

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, index):
        import time

        time.sleep(self.delay_s)
        return self.inner[index]


def sleepy_blobs(delay_s: float = 0.005, num_rows: int = 1600):
    """Blobs whose training samples are slow to read; validation is fast (it does not count as step time)."""
    train, val = blobs(num_rows)
    return SleepyDataset(train, delay_s), val


class RecordIds:
    """A step that writes the sample ids of each training batch (column 0 of the features) to
    ``ids_dir/rank<r>.txt`` and trains on the other columns."""

    def __init__(self, ids_dir: str):
        self.ids_dir = ids_dir

    def __call__(self, model, batch):
        import os

        import torch.distributed as dist

        x, y = batch
        if model.training:
            rank = dist.get_rank() if dist.is_initialized() else 0
            with open(os.path.join(self.ids_dir, f"rank{rank}.txt"), "a") as out:
                out.write(" ".join(str(int(i)) for i in x[:, 0].tolist()) + "\n")
        x = x.clone()
        x[:, 0] = 0.0
        return nn.functional.cross_entropy(model(x), y)
