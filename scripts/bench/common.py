"""What every runner process does: build the model and the data, and run the timed DDP loop.

The single, torchrun and Ray Train runners call the same functions here, so the only thing that
differs between them is how their processes are launched and connected. The loop is the plainest
one: every batch is a tensor made once before the clock starts and then cycled, no dataset
indexing, no sampler, nothing per step but zero_grad, forward, loss, backward and step. The
orchestrator runs its own loop, configured to match (model, data size, batch, SGD with momentum).

The data is the orchestrator's synthetic_classification recipe (Gaussian class clusters, random
labels), made here with torch alone so that a plain script imports nothing of the orchestrator:
the same distribution, so the same speed (values matter, e.g. denormal floats once the loss is tiny).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time

# Pin threads before torch starts its pools: one core per worker, like the orchestrator's workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import models  # noqa: E402  (repo root must be on PYTHONPATH)
from bench.workloads import (CLASS_SEP, CURVE_EVERY, LAUNCH_ENV, LR, MOMENTUM, NUM_CLASSES, SEED,  # noqa: E402
                             SKIP_PREFIX, WORKLOADS, RunnerResult, num_features)

CHUNK_ROWS = 8192  # generate a large dataset in chunks: no full-size temporaries next to it


def pin_threads() -> None:
    """One intra-op thread per worker, whatever the launcher set."""
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def build_model(workload: str) -> torch.nn.Module:
    spec = WORKLOADS[workload]
    torch.manual_seed(SEED)  # same initial weights on every rank and in every runner
    return models.build(spec["model"], spec["shape"], NUM_CLASSES, **spec["kwargs"])


def make_data(workload: str, num_samples: int) -> tuple:
    """(x, y): class centre + unit Gaussian noise per row, labels uniform; each rank holds its own copy."""
    gen = torch.Generator().manual_seed(SEED)
    features = num_features(workload)
    centres = torch.randn(NUM_CLASSES, features, generator=gen) * (CLASS_SEP / math.sqrt(2.0))
    y = torch.randint(0, NUM_CLASSES, (num_samples,), generator=gen)
    x = torch.empty(num_samples, *WORKLOADS[workload]["shape"])
    flat = x.view(num_samples, features)
    for start in range(0, num_samples, CHUNK_ROWS):
        labels = y[start:start + CHUNK_ROWS]
        flat[start:start + len(labels)] = torch.randn(len(labels), features, generator=gen) + centres[labels]
    return x, y


def make_batches(workload: str, num_samples: int, rank: int, world: int) -> list:
    """This rank's (x, y) batches, made once: contiguous slices (views, no copy) of the random-order data,
    batch k going to rank k % world, the last partial batch dropped."""
    batch = WORKLOADS[workload]["batch"]
    if num_samples < batch * world:
        raise ValueError(f"{num_samples} samples over {world} workers do not fill one batch of {batch}")
    x, y = make_data(workload, num_samples)
    starts = range(rank * batch, num_samples - batch + 1, world * batch)
    return [(x[s:s + batch], y[s:s + batch]) for s in starts]


def train(model: torch.nn.Module, workload: str, *, rank: int, world: int, steps: int, warmup: int,
          num_samples: int) -> RunnerResult:
    """Run `steps` optimizer steps; rank 0's timings are what the harness reports.

    first_step_unix is wall-clock (time.time) so it compares with the moment the driver spawned the
    command; the steady rate uses perf_counter over the steps after `warmup`. With DDP every backward
    all-reduces, so rank 0's clock is the group's clock.
    """
    if not 0 < warmup < steps:
        raise ValueError(f"need 0 < warmup ({warmup}) < steps ({steps})")
    batches = itertools.cycle(make_batches(workload, num_samples, rank, world))
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    model.train()
    curve, done = [], [0]

    def run(n: int):
        loss = None
        for x, y in itertools.islice(batches, n):
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            done[0] += 1
            if done[0] % CURVE_EVERY == 0:  # a CPU float of a loss already computed: no extra sync
                curve.append([done[0], float(loss.detach())])
        return loss

    run(1)
    first_step_unix = time.time()
    run(warmup - 1)
    t_warm = time.perf_counter()
    loss = run(steps - warmup)
    t_end = time.perf_counter()
    batch = WORKLOADS[workload]["batch"]
    return RunnerResult(first_step_unix=first_step_unix,
                        samples_per_sec=(steps - warmup) * batch * world / (t_end - t_warm),
                        steps=steps, warmup=warmup, world_size=world, final_loss=float(loss.detach()),
                        loss_curve=curve)


def print_result(result: RunnerResult) -> None:
    """The one line the harness parses, with the launch time the driver passed in."""
    launch = os.environ.get(LAUNCH_ENV)
    result.launch_unix = float(launch) if launch else None
    print(result.line(), flush=True)


def print_skip(reason: str) -> None:
    """The line that makes the harness skip this row, saying why."""
    print(SKIP_PREFIX + json.dumps({"reason": reason}), flush=True)


def add_common_args(parser) -> None:
    parser.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--num-samples", type=int, required=True)
