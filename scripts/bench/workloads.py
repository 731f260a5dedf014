"""What the benchmark trains and the one record a runner hands back: shared by the driver and the runners.

Plain data only (no torch import), so the driver can plan runs without paying for torch.
The workloads are the ones issue 14 measures: the 784-128-64-10 MLP, the default CNN and a
20M-parameter MLP, batch per worker as below, SGD with momentum (the orchestrator's defaults).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Optional

SEED = 0
NUM_CLASSES = 10
CLASS_SEP = 2.0  # the orchestrator's synthetic_classification default
LR = 0.05  # conf/optimizer/sgd.yaml
MOMENTUM = 0.9

# The driver's wall-clock time (time.time) just before it spawned the runner: the start-up clock.
LAUNCH_ENV = "BENCH_LAUNCH_UNIX"
RESULT_PREFIX = "BENCH_RESULT "
SKIP_PREFIX = "BENCH_SKIP "
CURVE_EVERY = 10  # a runner records rank 0's loss every this many steps (the comm-hook comparison's curves)

# name -> model name, input shape, model kwargs, per-worker batch size.
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
# Workloads of the throughput table (the memory check runs on its own).
THROUGHPUT_WORKLOADS = ["mlp", "cnn", "wide_mlp"]


def steps_for(workload: str, steps: int, warmup: int) -> tuple:
    """(steps, warm-up steps) for a workload: the requested figures times its steps_scale."""
    scale = WORKLOADS[workload]["steps_scale"]
    scaled_warmup = max(1, int(warmup * scale))
    return max(scaled_warmup + 10, int(steps * scale)), scaled_warmup


def num_features(workload: str) -> int:
    return math.prod(WORKLOADS[workload]["shape"])


def ms_per_step(samples_per_sec: Optional[float], workload: str, workers: int) -> Optional[float]:
    """Milliseconds per optimizer step from global samples/s (every step is batch x workers samples)."""
    if not samples_per_sec:
        return None
    return 1000.0 * WORKLOADS[workload]["batch"] * workers / samples_per_sec


@dataclass
class RunnerResult:
    """What rank 0 of a runner prints on its result line (one JSON object after RESULT_PREFIX)."""

    first_step_unix: float  # time.time() when the first optimizer step had finished
    samples_per_sec: float  # global samples/s over the steps after the warm-up
    steps: int
    warmup: int
    world_size: int
    final_loss: float
    launch_unix: Optional[float] = None  # LAUNCH_ENV as the runner received it (None: started by hand)
    loss_curve: Optional[list] = None  # [[step, rank 0's loss], ...] every CURVE_EVERY steps

    def line(self) -> str:
        return RESULT_PREFIX + json.dumps(asdict(self))

    @property
    def startup_s(self) -> Optional[float]:
        return None if self.launch_unix is None else self.first_step_unix - self.launch_unix
