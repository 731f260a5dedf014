"""What every runner trains: the workloads, their synthetic data and the timed training loop.

All runners (single, torchrun, Ray Train) call the same functions here, so the only thing
that differs between them is how the processes are launched and connected. The orchestrator
runs its own loop, configured to match (same model, data size, batch, Adam lr, seed).
"""

from __future__ import annotations

import json
import os
import time

# Pin threads before torch starts its pools: one core per worker, like the orchestrator's workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import models  # noqa: E402  (repo root must be on PYTHONPATH)

SEED = 0
NUM_CLASSES = 10
LR = 1e-3  # conf/optimizer/adam.yaml

# name -> model name, input shape, model kwargs, per-worker batch size
# steps_scale: a workload runs --steps x steps_scale steps, so a slow step (cnn, wide_mlp: ~0.1-0.3 s
# on one core) does not make a run last many minutes, while the fast mlp runs long enough to average out.
WORKLOADS = {
    "mlp": {"model": "mlp", "shape": [1, 28, 28], "kwargs": {"hidden_sizes": [128, 64]}, "batch": 64,
            "steps_scale": 1.0},
    "cnn": {"model": "cnn", "shape": [3, 32, 32], "kwargs": {}, "batch": 64, "steps_scale": 0.1},
    # ~20M parameters: 80 MB of gradients to all-reduce per step, so communication dominates.
    "wide_mlp": {"model": "mlp", "shape": [1, 28, 28], "kwargs": {"hidden_sizes": [4096, 4096]}, "batch": 32,
                 "steps_scale": 0.1},
    # The memory check: a small model on a large dataset (sized with --memory-gb); only memory matters.
    "memory": {"model": "mlp", "shape": [3, 32, 32], "kwargs": {"hidden_sizes": [128, 64]}, "batch": 64,
               "steps_scale": 1.0},
}


def steps_for(workload: str, steps: int, warmup: int) -> tuple:
    """(steps, warm-up steps) for a workload: the requested figures times its steps_scale."""
    scale = WORKLOADS[workload]["steps_scale"]
    scaled_warmup = max(1, int(warmup * scale))
    return max(scaled_warmup + 10, int(steps * scale)), scaled_warmup
# Workloads of the throughput table (the memory check runs on its own).
THROUGHPUT_WORKLOADS = ["mlp", "cnn", "wide_mlp"]

RESULT_PREFIX = "BENCH_RESULT "


def pin_threads() -> None:
    """One intra-op thread per worker, whatever the launcher set."""
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def build_model(workload: str) -> torch.nn.Module:
    spec = WORKLOADS[workload]
    torch.manual_seed(SEED)  # same initial weights on every rank and in every runner
    return models.build(spec["model"], spec["shape"], NUM_CLASSES, **spec["kwargs"])


def make_data(workload: str, num_samples: int):
    """The orchestrator's own synthetic classification data (same generator, seed and class
    separation), so every runner trains on identical numbers: the values matter for speed
    (e.g. denormal floats once the loss is tiny), not only the shapes."""
    from orchestrator import config as C, data

    spec = WORKLOADS[workload]
    num_features = 1
    for d in spec["shape"]:
        num_features *= d
    cfg = C.Config(model=C.MLPConfig(), optimizer=C.AdamConfig(), scheduler=C.ConstantSchedulerConfig(),
                   data=C.SyntheticClassificationConfig(num_samples=num_samples, num_features=num_features,
                                                        num_classes=NUM_CLASSES, sample_shape=list(spec["shape"]),
                                                        val_fraction=0.0),
                   trainer=C.TrainerConfig(seed=SEED))
    bundle = data.load(cfg).materialized()  # each rank holds its own copy, as a plain script would
    return torch.from_numpy(bundle.arrays["x_train"]), torch.from_numpy(bundle.arrays["y_train"])


def batches(num_samples: int, batch: int, rank: int, world: int):
    """Endless per-rank batch indices: shuffle each epoch, shard like DistributedSampler,
    drop the last partial batch."""
    if num_samples // world < batch:
        raise ValueError(f"{num_samples} samples over {world} workers do not fill one batch of {batch}")
    epoch = 0
    while True:
        perm = torch.randperm(num_samples, generator=torch.Generator().manual_seed(SEED + epoch))
        shard = perm[rank::world]
        for start in range(0, len(shard) - batch + 1, batch):
            yield shard[start:start + batch]
        epoch += 1


def train(model: torch.nn.Module, workload: str, *, rank: int, world: int, steps: int, warmup: int,
          num_samples: int) -> dict:
    """Run `steps` optimizer steps; rank 0's timings are what the harness reports.

    first_step_unix is wall-clock (time.time) so the harness can compare it with the moment it
    spawned the command; the steady rate uses perf_counter over the steps after `warmup`.
    With DDP every backward all-reduces, so rank 0's clock is the group's clock.
    """
    if not 0 < warmup < steps:
        raise ValueError(f"need 0 < warmup ({warmup}) < steps ({steps})")
    batch = WORKLOADS[workload]["batch"]
    x, y = make_data(workload, num_samples)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    model.train()

    first_step_unix = t_warm = None
    loss = torch.tensor(0.0)
    for step, idx in enumerate(batches(num_samples, batch, rank, world), start=1):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        if step == 1:
            first_step_unix = time.time()
        if step == warmup:
            t_warm = time.perf_counter()
        if step == steps:
            break
    t_end = time.perf_counter()

    return {
        "first_step_unix": first_step_unix,
        "samples_per_sec": (steps - warmup) * batch * world / (t_end - t_warm),
        "steps": steps,
        "warmup": warmup,
        "world_size": world,
        "final_loss": float(loss.detach()),
        "threads": torch.get_num_threads(),
        "pid": os.getpid(),
    }


def print_result(result: dict) -> None:
    """The one line the harness parses."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def add_common_args(parser) -> None:
    parser.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--num-samples", type=int, required=True)
