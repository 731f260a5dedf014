"""Per-rank training statistics: accumulated without host syncs, reduced across ranks in batches.

Between log steps each step's loss sum and correct-prediction count stay the
device scalars the step produced, kept in a list (no device work per step);
counts and timings are plain Python numbers. A log step only *closes a row*
(its window's values summed in float64: a few dispatches, no communication). Rows are reduced together once enough have piled up to fill
about ``FLUSH_TARGET_S`` seconds of training, so logging every step costs a few
small collectives per second instead of per step, and every step still gets its
own point. A flush sends O(rows) numbers per rank whatever the world size: the
sums and maxima are all-reduced (identical on every rank), and only four timing
means per rank are gathered, to rank 0, which reports them. The number of rows
per flush comes from the reduced slowest step time, so every rank flushes at the
same step. A flush also carries the "stop" vote, so all ranks leave the loop together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Dict, List, NamedTuple, Optional

import torch
import torch.distributed as dist

from orchestrator.worker.rank_metrics import rank_scalars

FLUSH_TARGET_S = 1.0   # reduce about once a second
MAX_ROWS = 64
FOLD_STEPS = 1024  # a log window longer than this is summed in parts (bounded memory)


@dataclass(slots=True)
class HostCounters:
    """One window's plain-number counters, summed on the host (no device work on the step path)."""
    count: float = 0.0        # loss terms (the loss's denominator)
    samples: float = 0.0
    steps: float = 0.0
    data_s: float = 0.0
    compute_s: float = 0.0
    optimizer_s: float = 0.0
    step_s: float = 0.0


class RowMeta(NamedTuple):
    """What rank 0 alone knows about a row (not reduced)."""
    step: int
    seconds: float  # wall time of the window
    lr: float


# The columns of a row, in order: the device sums, the host counters, the stop vote.
DEVICE_FIELDS = ("loss_sum", "correct")
HOST_FIELDS = tuple(f.name for f in fields(HostCounters))
FIELDS = DEVICE_FIELDS + HOST_FIELDS + ("stop",)
INDEX = {name: i for i, name in enumerate(FIELDS)}
TIMES = ("data_s", "compute_s", "optimizer_s", "step_s")
SUMMED = ("loss_sum", "correct", "count", "samples")  # then a custom step's metric sums
host_row = attrgetter(*HOST_FIELDS)  # HostCounters -> its values in HOST_FIELDS order


@dataclass
class RowMetrics:
    """Global figures for one log step's window (the steps since the previous log step)."""
    step: int
    loss: float
    loss_max_rank: float
    accuracy: Optional[float]
    samples: int
    steps: int
    seconds: float  # rank 0's wall time for the window
    lr: float
    metrics: Dict[str, float] = field(default_factory=dict)  # a custom step's metrics, global means


@dataclass
class Flush:
    rows: List[RowMetrics] = field(default_factory=list)
    # Mean seconds per step over the flushed rows, per rank: {"step_s": [rank0, rank1, ...], ...}.
    # On rank 0 only (the rank that reports); empty on the others.
    per_rank: Dict[str, List[float]] = field(default_factory=dict)
    slowest_step_s: float = 0.0  # the slowest rank's mean step time, identical on every rank
    grad_norm: Optional[float] = None
    stop: bool = False
    checkpoint: bool = False  # a rank was given notice (SIGTERM): every rank checkpoints now


class StepStats:
    def __init__(self, device: torch.device, has_accuracy: bool, log_every: int = 1):
        self.device = device
        self.has_accuracy = has_accuracy
        self.log_every = log_every
        self.rows_per_flush = 1  # until the first flush tells how long a step takes
        # The open window's per-step device scalars, summed when its row closes (no device work per step).
        self.step_losses: List[torch.Tensor] = []
        self.step_correct: List[torch.Tensor] = []
        self.folded: Optional[torch.Tensor] = None  # (loss sum, correct) of a long window's earlier steps
        self.zero = torch.zeros((), dtype=torch.float64, device=device)
        self.host = HostCounters()
        self.window_started = time.perf_counter()
        self.device_rows: List[torch.Tensor] = []
        self.host_rows: List[tuple] = []  # host_row(HostCounters) per closed row
        self.meta: List[RowMeta] = []
        self.grad_norm: Optional[torch.Tensor] = None
        # A custom step's metrics: sums weighted by count, one column each after the fixed fields.
        self.metric_names: List[str] = []
        self.metric_sums: Optional[torch.Tensor] = None
        self.metric_rows: List[torch.Tensor] = []

    @property
    def steps_in_window(self) -> int:
        return int(self.host.steps)

    def add(self, loss_sum: torch.Tensor, correct: Optional[torch.Tensor], count: int, samples: int,
            times: Dict[str, float], metric_sums: Optional[Dict[str, torch.Tensor]] = None) -> None:
        self.step_losses.append(loss_sum.detach())
        if correct is not None:
            self.step_correct.append(correct)
        if len(self.step_losses) >= FOLD_STEPS:
            self.fold()
        if metric_sums:
            self.add_metrics(metric_sums)
        h = self.host
        h.count += count
        h.samples += samples
        h.steps += 1
        h.data_s += times["data_s"]
        h.compute_s += times["compute_s"]
        h.optimizer_s += times["optimizer_s"]
        h.step_s += times["step_s"]

    def add_metrics(self, metric_sums: Dict[str, torch.Tensor]) -> None:
        if self.metric_sums is None:
            self.metric_names = sorted(metric_sums)
            self.metric_sums = torch.zeros(len(self.metric_names), dtype=torch.float64, device=self.device)
        self.metric_sums += torch.stack([metric_sums[name].to(torch.float64) for name in self.metric_names])

    def flush_due_with_next_row(self) -> bool:
        return len(self.meta) + 1 >= self.rows_per_flush

    def close_row(self, step: int, lr: float, grad_norm: Optional[torch.Tensor]) -> None:
        """At a log step: keep this window as a row (no communication)."""
        now = time.perf_counter()
        self.fold()
        self.device_rows.append(self.folded if self.folded is not None else torch.stack([self.zero, self.zero]))
        self.folded = None
        if self.metric_sums is not None:
            self.metric_rows.append(self.metric_sums.clone())
            self.metric_sums.zero_()
        self.host_rows.append(host_row(self.host))
        self.host = HostCounters()
        self.meta.append(RowMeta(step, now - self.window_started, lr))
        self.window_started = now
        if grad_norm is not None:
            self.grad_norm = grad_norm

    def fold(self) -> None:
        """Sum the window's pending step values into ``folded``, in float64: five dispatches per row
        (log step), instead of two additions per step; every step's value still counts exactly once."""
        if not self.step_losses:
            return
        correct = torch.stack(self.step_correct).sum(dtype=torch.float64) if self.step_correct else self.zero
        sums = torch.stack([torch.stack(self.step_losses).sum(dtype=torch.float64), correct])
        self.folded = sums if self.folded is None else self.folded + sums
        self.step_losses, self.step_correct = [], []

    def layout(self) -> Dict:
        """The shape of what is pending (plain numbers): a rank that joins a healed gang mirrors it
        with empty rows (``pad_to``), so the next flush reduces tables of the same shape everywhere."""
        return {"meta": [tuple(m) for m in self.meta], "rows_per_flush": self.rows_per_flush,
                "metric_names": list(self.metric_names), "steps_in_window": self.steps_in_window}

    def pad_to(self, layout: Dict) -> None:
        """Empty rows (nothing counted by this rank) at the same steps as ``layout``'s."""
        self.meta = [RowMeta(*m) for m in layout["meta"]]
        self.rows_per_flush = layout["rows_per_flush"]
        self.device_rows = [torch.zeros(2, dtype=torch.float64, device=self.device) for _ in self.meta]
        self.host_rows = [host_row(HostCounters()) for _ in self.meta]
        self.metric_names = list(layout["metric_names"])
        if self.metric_names:
            self.metric_sums = torch.zeros(len(self.metric_names), dtype=torch.float64, device=self.device)
            self.metric_rows = [self.metric_sums.clone() for _ in self.meta]
        self.host.steps = float(layout["steps_in_window"])  # the open window closes at the same step everywhere

    def shift_clock(self, seconds: float) -> None:
        """Validation and checkpoints do not count as training time in the throughput."""
        self.window_started += seconds

    def flush(self, stop_vote: bool, checkpoint_vote: bool = False) -> Flush:
        """Collective: every rank must call it at the same step. A host sync point. The votes travel as one
        number, reduced by MAX: 2 stop, 1 checkpoint now, 0 go on."""
        if self.meta:
            parts = [torch.stack(self.device_rows),
                     torch.tensor(self.host_rows, dtype=torch.float64, device=self.device),
                     torch.zeros(len(self.meta), 1, dtype=torch.float64, device=self.device)]  # the stop vote
            if self.metric_rows:
                parts.append(torch.stack(self.metric_rows))
            local = torch.cat(parts, dim=1)
        else:  # nothing to report, but the stop vote still travels
            local = torch.zeros(1, len(FIELDS) + len(self.metric_names), dtype=torch.float64, device=self.device)
        local[:, INDEX["stop"]] = 2.0 if stop_vote else float(checkpoint_vote)
        result = summarise(reduce_across_ranks(local), self.meta, self.has_accuracy, self.metric_names)
        result.grad_norm = self.grad_norm.item() if self.grad_norm is not None else None
        if result.rows:
            self.rows_per_flush = rows_for(result, self.log_every)
        self.device_rows, self.host_rows, self.meta, self.grad_norm, self.metric_rows = [], [], [], None, []
        return result


@dataclass
class Reduced:
    """One flush's (rows, fields) tables of all ranks, reduced. All on the host."""
    sums: torch.Tensor       # (rows, SUMMED + metrics): summed over ranks
    loss_max: torch.Tensor   # (rows,): the highest per-rank mean loss
    steps: torch.Tensor      # (rows,): the most steps a rank took in the row's window
    stop: bool
    slowest_step_s: float
    per_rank: Optional[torch.Tensor]  # (world, TIMES) mean seconds per step; rank 0 only
    checkpoint: bool = False


def reduce_across_ranks(local: torch.Tensor) -> Reduced:
    """Collective (3 small ones): sums and maxima all-reduced, per-rank timing means gathered to rank 0."""
    rows = local.shape[0]
    sums = torch.cat([local[:, [INDEX[name] for name in SUMMED]], local[:, len(FIELDS):]], dim=1)
    timings = torch.stack([local[:, INDEX[key]].sum() for key in TIMES]) / local[:, INDEX["steps"]].sum().clamp(min=1)
    maxima = torch.cat([local[:, INDEX["loss_sum"]] / local[:, INDEX["count"]].clamp(min=1), local[:, INDEX["steps"]],
                        local[:, INDEX["stop"]].max().view(1), timings[TIMES.index("step_s")].view(1)])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
        dist.all_reduce(maxima, op=dist.ReduceOp.MAX)
    sums, maxima = sums.cpu(), maxima.cpu()
    return Reduced(sums=sums, loss_max=maxima[:rows], steps=maxima[rows:2 * rows], stop=bool(maxima[-2] >= 2),
                   slowest_step_s=float(maxima[-1]), per_rank=gather_to_rank_zero(timings),
                   checkpoint=bool(maxima[-2] >= 1))


def gather_to_rank_zero(values: torch.Tensor) -> Optional[torch.Tensor]:
    """(world, len(values)) on rank 0, None elsewhere: O(world) numbers, and only where they are reported."""
    if not (dist.is_available() and dist.is_initialized()):
        return values.unsqueeze(0).cpu()
    parts = [torch.empty_like(values) for _ in range(dist.get_world_size())] if dist.get_rank() == 0 else None
    dist.gather(values, parts, dst=0)
    return torch.stack(parts).cpu() if parts is not None else None


def summarise(reduced: Reduced, meta: List[RowMeta], has_accuracy: bool, metric_names: List[str] = ()) -> Flush:
    """Reduced tables -> per-row global figures and (on rank 0) per-rank step timings."""
    if not meta:
        return Flush(stop=reduced.stop, checkpoint=reduced.checkpoint)
    col = {name: reduced.sums[:, i] for i, name in enumerate(SUMMED)}
    count = col["count"].clamp(min=1)
    loss = (col["loss_sum"] / count).tolist()
    accuracy = (col["correct"] / count).tolist() if has_accuracy else [None] * len(meta)
    samples, steps, loss_max = col["samples"].tolist(), reduced.steps.tolist(), reduced.loss_max.tolist()
    metric_means = {name: (reduced.sums[:, len(SUMMED) + j] / count).tolist() for j, name in enumerate(metric_names)}
    rows = [RowMetrics(step=m.step, loss=loss[i], loss_max_rank=loss_max[i], accuracy=accuracy[i],
                       samples=int(samples[i]), steps=int(steps[i]), seconds=m.seconds, lr=m.lr,
                       metrics={name: means[i] for name, means in metric_means.items()})
            for i, m in enumerate(meta)]
    per_rank = ({key: reduced.per_rank[:, i].tolist() for i, key in enumerate(TIMES)}
                if reduced.per_rank is not None else {})
    return Flush(rows=rows, per_rank=per_rank, slowest_step_s=reduced.slowest_step_s, stop=reduced.stop,
                 checkpoint=reduced.checkpoint)


def rows_for(flush: Flush, log_every: int) -> int:
    """How many rows fill about FLUSH_TARGET_S, from the slowest rank's step time (identical everywhere)."""
    seconds_per_row = flush.slowest_step_s * log_every
    if seconds_per_row <= 0:
        return 1
    return max(1, min(MAX_ROWS, int(FLUSH_TARGET_S / seconds_per_row)))


def row_scalars(row: RowMetrics) -> Dict[str, float]:
    values = {
        "train/loss": row.loss,
        "train/loss_max_rank": row.loss_max_rank,
        "train/lr": row.lr,
        "train/samples_per_sec": row.samples / row.seconds if row.seconds > 0 else 0.0,
    }
    if row.accuracy is not None:
        values["train/accuracy"] = row.accuracy
    values.update({f"train/{name}": value for name, value in row.metrics.items()})
    return values


def flush_scalars(flush: Flush, samples_per_step: int, per_rank_up_to: int = 16) -> Dict[str, float]:
    """Once per flush (about a second): gradient norm, global batch, the ranks' step-time split
    (a tag per rank up to ``per_rank_up_to`` ranks, a distribution across ranks above)."""
    values = {"train/global_batch": float(samples_per_step)}
    if flush.grad_norm is not None:
        values["train/grad_norm"] = flush.grad_norm
    values.update(rank_scalars(flush.per_rank, per_rank_up_to))
    return values


def time_split(totals: Dict[str, List[float]]) -> Dict[str, float]:
    """Where the slowest rank's step time went over the run, in percent (data wait, compute, optimizer)."""
    step = totals.get("step_s")
    if not step or max(step) <= 0:
        return {}
    slowest = max(range(len(step)), key=lambda rank: step[rank])
    return {f"{key[:-2]}_pct": 100.0 * totals[key][slowest] / step[slowest]
            for key in ("data_s", "compute_s", "optimizer_s") if key in totals}


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

    def step_done(self, global_samples: int) -> None:
        now = time.perf_counter()
        self.calls += 1
        if self.calls > self.warmup_steps:
            self.samples += global_samples
            self.seconds += now - self._since
        if self.calls >= self.warmup_steps:
            self._since = now

    def shift_clock(self, seconds: float) -> None:
        if self._since is not None:
            self._since += seconds

    @property
    def samples_per_sec(self) -> Optional[float]:
        return self.samples / self.seconds if self.seconds > 0 else None
