"""The training loop, run by every rank. I/O goes only through the Reporter.

Sync points are explicit: DDP's all-reduce inside backward, the metrics
reduction on log steps (``StepStats.reduce``), validation, and checkpoints.
Every decision to stop is taken from reduced (hence identical) values or a
collective vote, so all ranks leave the loop at the same step.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import torch

from orchestrator import batches, chaos, state as S
from orchestrator.build import Components
from orchestrator.losses import compute_loss, count_correct, predictions_in
from orchestrator.reporting import Reporter
from orchestrator.stats import Reduced, StepStats, Throughput, all_reduce_sum


@dataclass
class FitResult:
    stop_reason: str
    step: int
    epoch: int
    metrics: Dict[str, float] = field(default_factory=dict)
    timing: Dict[str, float] = field(default_factory=dict)


def to_device(pair, device: torch.device):
    x, y = pair
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def micro_batch_groups(index_batches, k: int):
    group: List[torch.Tensor] = []
    for idx in index_batches:
        group.append(idx)
        if len(group) == k:
            yield group
            group = []


@torch.no_grad()
def evaluate(c: Components, view: batches.SplitView, r: Reporter, step: int, phase: str,
             model: Optional[torch.nn.Module] = None) -> Dict[str, float]:
    """Exact loss/accuracy over the whole split: each rank a disjoint shard, then one all-reduce."""
    model = model or c.module  # the bare module: no DDP collectives, shards may differ in length
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=c.device)
    correct = torch.zeros((), dtype=torch.float64, device=c.device)
    count = 0
    for idx in batches.eval_batches(len(view), c.rank, c.plan.world_size, c.cfg.data.batch_size):
        x, y = to_device(view.batch(idx), c.device)
        with c.stepper.autocast():
            output = model(x)
        n = predictions_in(output, c.loss_kind)
        loss_sum += compute_loss(c.loss_kind, output, y).double() * n
        hits = count_correct(c.loss_kind, output, y)
        if hits is not None:
            correct += hits.double()
        count += n
        r.progress(step, phase)
    total_loss, total_correct, total = all_reduce_sum([loss_sum.item(), correct.item(), float(count)], c.device)
    metrics = {f"{phase_prefix(phase)}/loss": total_loss / max(total, 1)}
    if c.loss_kind != "mse":
        metrics[f"{phase_prefix(phase)}/accuracy"] = total_correct / max(total, 1)
    return metrics


def phase_prefix(phase: str) -> str:
    return {"validate": "val", "test": "test"}[phase]


def train_scalars(reduced: Reduced, grad_norm: Optional[torch.Tensor], lr: float, seconds: float,
                  samples_per_step: int) -> Dict[str, float]:
    values = {
        "train/loss": reduced.loss,
        "train/loss_max_rank": reduced.loss_max_rank,
        "train/lr": lr,
        "train/samples_per_sec": reduced.samples / seconds if seconds > 0 else 0.0,
        "train/global_batch": float(samples_per_step),
    }
    if reduced.accuracy is not None:
        values["train/accuracy"] = reduced.accuracy
    if grad_norm is not None:
        values["train/grad_norm"] = grad_norm.item()
    for key, per_rank in reduced.per_rank.items():
        name = key[:-2]  # data_s -> data
        for rank, seconds_per_step in enumerate(per_rank):
            values[f"worker/{rank}/{name}_ms"] = 1000.0 * seconds_per_step
    return values


class Loop:
    def __init__(self, c: Components, r: Reporter, state: S.TrainState):
        self.c, self.r, self.state = c, r, state
        cfg = c.cfg
        self.samples_per_step = cfg.data.batch_size * c.plan.accumulate * c.plan.world_size
        self.stats = StepStats(c.device, has_accuracy=c.loss_kind != "mse")
        self.throughput = Throughput(warmup_steps=min(5, max(1, c.total_steps // 10)))
        self.last_checkpoint_step = -1
        self.last_val_step = -1
        self.stopped_on_request = False
        self.timing: Dict[str, float] = {}
        self.last_log = self.paused_at = time.perf_counter()

    # ----------------------------------------------------------------- phases
    def fit(self) -> FitResult:
        c, r, st = self.c, self.r, self.state
        r.info({"steps_per_epoch": c.steps_per_epoch, "total_steps": c.total_steps, "start_step": st.step,
                "world_size": c.plan.world_size, "samples_per_step": self.samples_per_step})
        stop_reason = self.stop_before_start()
        while stop_reason is None:
            stop_reason = self.train_epoch()
        return self.finish(stop_reason)

    def stop_before_start(self) -> Optional[str]:
        if self.c.cfg.trainer.max_steps is not None and self.state.step >= self.c.cfg.trainer.max_steps:
            return "max_steps"
        if self.state.epoch >= self.c.cfg.trainer.max_epochs:
            return "max_epochs"
        return None

    def train_epoch(self) -> Optional[str]:
        c, r, st, cfg = self.c, self.r, self.state, self.c.cfg
        epoch_start = time.perf_counter()
        c.sampler.set_epoch(st.epoch)
        c.sampler.set_start(st.samples_in_epoch)
        index_batches = batches.train_batches(c.train, c.sampler, cfg.data.batch_size)
        self.last_log = time.perf_counter()
        for group in micro_batch_groups(index_batches, c.plan.accumulate):
            stop_reason = self.train_step(group)
            if stop_reason:
                return stop_reason
        st.epoch += 1
        st.step_in_epoch = 0
        st.samples_in_epoch = 0
        r.metrics(st.step, {"time/epoch_s": time.perf_counter() - epoch_start, "train/epoch": float(st.epoch)})
        if cfg.trainer.val_every_n_steps is None:
            self.validate()
        if cfg.checkpoint.every_epoch:
            self.checkpoint()
        if st.epoch >= cfg.trainer.max_epochs:
            return "max_epochs"
        return None

    def train_step(self, group: List[torch.Tensor]) -> Optional[str]:
        c, r, st, cfg = self.c, self.r, self.state, self.c.cfg
        t0 = time.perf_counter()
        micro = [to_device(c.train.batch(idx), c.device) for idx in group]
        data_seconds = time.perf_counter() - t0
        chaos.before_step(cfg.chaos, c.rank, c.plan.attempt, st.step + 1, c.stepper)
        log_now = self.first_step_pending() or (st.step + 1) % cfg.trainer.log_every_n_steps == 0
        result = c.stepper.step(micro, want_grad_norm=log_now, data_seconds=data_seconds)
        st.step += 1
        st.step_in_epoch += 1
        st.samples_in_epoch += self.samples_per_step
        r.progress(st.step, "train")
        self.stats.add(result.loss_sum, result.correct, result.count, result.samples, result.times)
        self.throughput.step_done(self.samples_per_step)
        if self.first_step_pending():
            self.timing["first_step_unix"] = time.time()
            r.info({"first_step_unix": self.timing["first_step_unix"]})

        stop_reason = None
        if log_now:
            stop_reason = self.log(result.grad_norm)
        if cfg.trainer.val_every_n_steps and st.step % cfg.trainer.val_every_n_steps == 0:
            self.validate()
        if cfg.checkpoint.every_n_steps and st.step % cfg.checkpoint.every_n_steps == 0:
            self.checkpoint()
        if cfg.trainer.max_steps is not None and st.step >= cfg.trainer.max_steps:
            stop_reason = stop_reason or "max_steps"
        return stop_reason

    def first_step_pending(self) -> bool:
        return "first_step_unix" not in self.timing

    def log(self, grad_norm: Optional[torch.Tensor]) -> Optional[str]:
        """Reduce across ranks (sync point) and report; also the collective stop vote."""
        c, r, st = self.c, self.r, self.state
        reduced = self.stats.reduce(stop_vote=r.stop_reason() is not None)
        now = time.perf_counter()
        lr = c.optimizer.param_groups[0]["lr"]
        r.metrics(st.step, train_scalars(reduced, grad_norm, lr, now - self.last_log, self.samples_per_step))
        self.last_log = now
        if reduced.stop:
            self.stopped_on_request = True
            return r.stop_reason() or "stop requested"
        return None

    def validate(self) -> None:
        c, r, st = self.c, self.r, self.state
        if c.val is None or self.last_val_step == st.step:
            return
        self.pause()
        metrics = evaluate(c, c.val, r, st.step, "validate")
        self.resume()
        self.last_val_step = st.step
        st.last_val = metrics
        r.metrics(st.step, metrics)

    def checkpoint(self) -> None:
        c, r, st = self.c, self.r, self.state
        if self.last_checkpoint_step == st.step:
            return
        self.pause()
        r.progress(st.step, "checkpoint")
        payload = S.capture(c.module, c.optimizer, c.scheduler, c.scaler, st, c.plan.world_size, c.config_yaml)
        if payload is not None:
            r.checkpoint(st.step, payload, {"epoch": st.epoch, "metrics": dict(st.last_val)})
        self.last_checkpoint_step = st.step
        self.resume()

    def pause(self) -> None:
        """Validation and checkpoints do not count as training time in throughput figures."""
        self.paused_at = time.perf_counter()
        self.throughput.pause()

    def resume(self) -> None:
        self.last_log += time.perf_counter() - self.paused_at
        self.throughput.resume()

    def finish(self, stop_reason: str) -> FitResult:
        c, r, st = self.c, self.r, self.state
        if self.stats.steps:
            self.log(None)  # flush the partial logging window
        if not self.stopped_on_request:  # asked to stop (Ctrl-C, pruning): checkpoint and go
            self.validate()
        self.checkpoint()  # the final state, whatever stopped the run
        metrics = dict(st.last_val)
        if self.throughput.samples_per_sec is not None:
            self.timing["steady_samples_per_sec"] = self.throughput.samples_per_sec
        r.progress(st.step, "done")
        return FitResult(stop_reason=stop_reason, step=st.step, epoch=st.epoch, metrics=metrics,
                         timing=dict(self.timing))


def fit(c: Components, r: Reporter, state: Optional[S.TrainState] = None) -> FitResult:
    return Loop(c, r, state or S.TrainState()).fit()


def result_dict(result: FitResult) -> Dict:
    return asdict(result)
