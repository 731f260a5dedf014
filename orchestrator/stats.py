"""Per-rank training statistics, accumulated without host syncs and reduced across ranks on log steps.

Between log steps every quantity stays a device tensor (adding them is
asynchronous on a GPU). ``reduce`` packs one small vector per rank, does a
single ``all_gather`` (the only collective besides DDP's) and turns it into
global means, per-rank maxima and per-rank timings. It also carries a "stop"
vote, so that every rank leaves the loop at the same step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
import torch.distributed as dist

# Layout of the per-rank vector.
FIELDS = ["loss_sum", "correct", "count", "samples", "steps", "data_s", "compute_s", "optimizer_s", "step_s",
          "stop"]
INDEX = {name: i for i, name in enumerate(FIELDS)}


@dataclass
class Reduced:
    """Global view of the steps since the previous log step."""
    loss: float
    loss_max_rank: float
    accuracy: Optional[float]
    samples: int
    steps: int
    per_rank: Dict[str, List[float]] = field(default_factory=dict)  # mean seconds per step, per rank
    stop: bool = False


class StepStats:
    def __init__(self, device: torch.device, has_accuracy: bool):
        self.device = device
        self.has_accuracy = has_accuracy
        self.reset()

    def reset(self) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.correct = torch.zeros((), dtype=torch.float64, device=self.device)
        self.count = 0
        self.samples = 0
        self.steps = 0
        self.times = {"data_s": 0.0, "compute_s": 0.0, "optimizer_s": 0.0, "step_s": 0.0}

    def add(self, loss_sum: torch.Tensor, correct: Optional[torch.Tensor], count: int, samples: int,
            times: Dict[str, float]) -> None:
        self.loss_sum += loss_sum.detach().to(torch.float64)
        if correct is not None:
            self.correct += correct.to(torch.float64)
        self.count += count
        self.samples += samples
        self.steps += 1
        for key, value in times.items():
            self.times[key] += value

    def reduce(self, stop_vote: bool) -> Reduced:
        """Collective: every rank must call it at the same step. A host sync point."""
        local = torch.zeros(len(FIELDS), dtype=torch.float64, device=self.device)
        local[INDEX["loss_sum"]] = self.loss_sum
        local[INDEX["correct"]] = self.correct
        scalars = {"count": self.count, "samples": self.samples, "steps": self.steps, "stop": float(stop_vote),
                   **self.times}
        for key, value in scalars.items():
            local[INDEX[key]] = value
        table = gather_rows(local)  # (world, fields), on the host
        self.reset()
        return summarise(table, self.has_accuracy)


def gather_rows(local: torch.Tensor) -> torch.Tensor:
    if not (dist.is_available() and dist.is_initialized()):
        return local.unsqueeze(0).cpu()
    rows = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(rows, local)
    return torch.stack(rows).cpu()


def summarise(table: torch.Tensor, has_accuracy: bool) -> Reduced:
    col = {name: table[:, i] for name, i in INDEX.items()}
    count = col["count"].sum().item()
    per_rank_loss = col["loss_sum"] / col["count"].clamp(min=1)
    steps = col["steps"].clamp(min=1)
    return Reduced(
        loss=col["loss_sum"].sum().item() / max(count, 1),
        loss_max_rank=per_rank_loss.max().item(),
        accuracy=col["correct"].sum().item() / max(count, 1) if has_accuracy else None,
        samples=int(col["samples"].sum().item()),
        steps=int(col["steps"].max().item()),
        per_rank={key: (col[key] / steps).tolist() for key in ("data_s", "compute_s", "optimizer_s", "step_s")},
        stop=bool(col["stop"].max().item() > 0),
    )


def all_reduce_sum(values: List[float], device: torch.device) -> List[float]:
    """Sum a few numbers over ranks (used by evaluation). A sync point."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


class Throughput:
    """Steady-state samples/s: wall time after a warm-up, with validation and checkpoint pauses excluded."""

    def __init__(self, warmup_steps: int):
        self.warmup_steps = max(1, warmup_steps)  # steps of this attempt not counted (start-up effects)
        self.calls = 0
        self.samples = 0
        self.seconds = 0.0
        self._since: Optional[float] = None
        self._paused_at = 0.0

    def step_done(self, global_samples: int) -> None:
        now = time.perf_counter()
        self.calls += 1
        if self.calls > self.warmup_steps:
            self.samples += global_samples
            self.seconds += now - self._since
        if self.calls >= self.warmup_steps:
            self._since = now

    def pause(self) -> None:
        self._paused_at = time.perf_counter()

    def resume(self) -> None:
        if self._since is not None:
            self._since += time.perf_counter() - self._paused_at

    @property
    def samples_per_sec(self) -> Optional[float]:
        return self.samples / self.seconds if self.seconds > 0 else None
