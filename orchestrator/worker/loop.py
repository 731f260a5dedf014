"""The training loop, run by every rank: steps, validates, checkpoints, and calls its callbacks
(``callbacks/``), which hold every other behaviour. I/O goes only through the Reporter.

Sync points are explicit: DDP's all-reduce inside backward, the per-step
finiteness check of the (all-reduced) gradients, the metrics reduction on log
steps (``StepStats.reduce``), validation, and checkpoints. Every decision to
stop is taken from reduced (hence identical) values or a collective vote, so
all ranks leave the loop at the same step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch

from orchestrator import config as C
from orchestrator.checkpoint import state as S
from orchestrator.policy.monitors import generalisation_gap
from orchestrator.policy.outcomes import StopKind
from orchestrator.records import FirstStepInfo, PlanInfo
from orchestrator.worker import callbacks as CB
from orchestrator.worker.build import Components
from orchestrator.worker.evaluate import evaluate, to_device
from orchestrator.worker.health import first_non_finite_gradient
from orchestrator.worker.peer_heal import seed_step
from orchestrator.worker.reporting import Reporter
from orchestrator.worker.stats import RowMetrics, StepStats, Throughput, flush_scalars, row_scalars, time_split


@dataclass
class FitResult:
    stop_reason: str                  # for people
    stop_kind: StopKind               # for the driver, which decides on it
    step: int
    epoch: int
    stopped_on_request: bool = False  # stopped because the driver asked (Ctrl-C, pruning): not completed
    metrics: Dict[str, float] = field(default_factory=dict)
    timing: Dict[str, float] = field(default_factory=dict)


def next_group(batches, k: int) -> Optional[List]:
    """The next k batches of the epoch, or None when fewer than k are left (dropped, like the sampler's
    last incomplete batch, so that every rank takes the same number of steps)."""
    group = []
    for batch in batches:
        group.append(batch)
        if len(group) == k:
            return group
    return None


class TrainWindow:
    """Training loss/accuracy since the previous validation (from reduced, identical values).
    Saved in checkpoints, so a resumed run measures the same generalisation gap."""

    def __init__(self, state: Optional[Dict[str, float]] = None):
        self.loss = self.correct = self.count = 0.0
        if state:
            self.loss, self.correct, self.count = state["loss"], state["correct"], state["count"]

    def state_dict(self) -> Dict[str, float]:
        return {"loss": self.loss, "correct": self.correct, "count": self.count}

    def add(self, reduced: RowMetrics) -> None:
        self.loss += reduced.loss * reduced.samples
        self.correct += (reduced.accuracy or 0.0) * reduced.samples
        self.count += reduced.samples

    def take(self, has_accuracy: bool) -> Dict[str, float]:
        if not self.count:
            return {}
        out = {"loss": self.loss / self.count}
        if has_accuracy:
            out["accuracy"] = self.correct / self.count
        self.__init__()
        return out


class Loop:
    def __init__(self, c: Components, r: Reporter, state: S.TrainState, best_weights=None,
                 callbacks: Optional[List[CB.Callback]] = None, extra_callbacks: Sequence[CB.Callback] = ()):
        self.c, self.r, self.state = c, r, state
        cfg = c.cfg
        self.samples_per_step = C.batch_size(cfg) * c.plan.accumulate * c.plan.world_size
        self.has_accuracy = c.has_accuracy
        self.stats = StepStats(c.device, has_accuracy=self.has_accuracy, log_every=cfg.trainer.log_every_n_steps)
        # Steady state: leave out the first 10% of the run's steps (at least 1, at most 200).
        self.throughput = Throughput(warmup_steps=min(200, max(1, c.total_steps // 10)))
        self.callbacks = callbacks if callbacks is not None else CB.from_config(
            cfg, c.module, r.keeps_records, has_test_split=c.splits.test is not None)
        self.callbacks = [*self.callbacks, *extra_callbacks]  # an attempt's own (a trial's pruning verdicts)
        for callback in self.callbacks:
            if callback.state_key and callback.state_key in state.monitors:
                callback.load_state_dict(state.monitors[callback.state_key])
        self.window = TrainWindow(state.monitors.get("train_window"))
        self.best_weights = best_weights  # kept by the BestModel callback when a test split will use them
        self.stop_reason: Optional[str] = None
        self.stop_kind: Optional[StopKind] = None
        self.stopped_on_request = False
        self.consecutive_skips = 0
        self.step_in_flight = False
        self.checkpoint_now = False
        self.last_checkpoint_step = -1
        self.last_val_step = -1
        self.timing: Dict[str, float] = {}
        self.time_totals: Dict[str, List[float]] = {}  # seconds per rank over the run, by phase
        self.paused_at = time.perf_counter()

    def stop(self, kind: StopKind, reason: Optional[str] = None) -> None:
        """The first reason wins; every rank reaches the same one from the same reduced values."""
        if self.stop_reason is None:
            self.stop_kind, self.stop_reason = kind, reason or kind.value

    def call(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def callback_states(self) -> Dict[str, Dict]:
        states = {cb.state_key: cb.state_dict() for cb in self.callbacks if cb.state_key}
        return {**states, "train_window": self.window.state_dict()}

    # ----------------------------------------------------------------- phases
    def fit(self) -> FitResult:
        c, r, st = self.c, self.r, self.state
        r.info(PlanInfo(steps_per_epoch=c.steps_per_epoch, total_steps=c.total_steps, start_step=st.step,
                        world_size=c.plan.world_size, samples_per_step=self.samples_per_step,
                        data_sizes=dict(c.splits.info.sizes)))
        if c.cfg.trainer.max_steps is not None and st.step >= c.cfg.trainer.max_steps:
            self.stop(StopKind.MAX_STEPS)
        if st.epoch >= c.cfg.trainer.max_epochs:
            self.stop(StopKind.MAX_EPOCHS)
        self.call("on_fit_start")
        while self.stop_reason is None:
            self.train_epoch()
        return self.finish()

    def train_epoch(self) -> None:
        c, r, st, cfg = self.c, self.r, self.state, self.c.cfg
        epoch_start = time.perf_counter()
        self.check_resume_position()
        batches = iter(c.train_loader(st.epoch, st.samples_in_epoch, st.step_in_epoch * c.plan.accumulate))
        while True:
            t0 = time.perf_counter()
            group = next_group(batches, c.plan.accumulate)
            if group is None:
                break
            micro = [to_device(batch, c.device) for batch in group]
            self.train_step(micro, time.perf_counter() - t0)
            if self.stop_reason:
                return
        st.epoch += 1
        st.step_in_epoch = 0
        st.samples_in_epoch = 0
        r.metrics(st.step, {"time/epoch_s": time.perf_counter() - epoch_start, "train/epoch": float(st.epoch)})
        if cfg.trainer.val_every_n_steps is None:
            self.validate()
        self.call("on_epoch_end", st.epoch)
        if st.epoch >= cfg.trainer.max_epochs:
            self.stop(StopKind.MAX_EPOCHS)

    def check_resume_position(self) -> None:
        """A stream that cannot continue its epoch exactly (dealt to another layout) starts it again."""
        st = self.state
        problem = st.samples_in_epoch and self.c.train_source.resume_problem(st.data_position)
        if problem:
            self.r.event(st.step, "data_resume", f"resuming at the start of epoch {st.epoch + 1}, not mid-epoch: "
                                                 f"{problem}; its first {st.samples_in_epoch} samples are seen again")
            st.step_in_epoch = st.samples_in_epoch = 0

    def train_step(self, micro: List, data_seconds: float) -> None:
        c, r, st, cfg = self.c, self.r, self.state, self.c.cfg
        step = st.step + 1
        self.call("on_step_start", step)
        log_now = self.first_step_pending() or step % cfg.trainer.log_every_n_steps == 0
        # The gradient norm (a pass over all gradients) is measured on steps whose metrics are reduced.
        flush_now = log_now and self.stats.flush_due_with_next_row()
        seed_step(cfg.trainer.seed, c.rank, step, c.device)
        self.step_in_flight = True  # a failed collective from here on drops this step (peer_heal.hold)
        result = c.stepper.step(micro, want_grad_norm=flush_now, data_seconds=data_seconds)
        st.step = step
        self.step_in_flight = False
        st.step_in_epoch += 1
        st.samples_in_epoch += self.samples_per_step
        r.progress(step, "train")
        if not result.finite:
            self.non_finite(step, result)
        else:
            self.consecutive_skips = 0
            self.stats.add(result.loss_sum, result.correct, result.count, result.samples, result.times,
                           result.metric_sums)
        self.throughput.step_done(self.samples_per_step)
        if self.first_step_pending():
            self.timing["first_step_unix"] = time.time()
            r.info(FirstStepInfo(attempt=c.plan.attempt, unix=self.timing["first_step_unix"],
                                 first_batch_s=data_seconds, first_step_s=result.times["step_s"]))
        if log_now:
            self.stats.close_row(step, c.optimizer.param_groups[0]["lr"], result.grad_norm)
            if flush_now:
                self.flush_logs()
        if cfg.trainer.val_every_n_steps and step % cfg.trainer.val_every_n_steps == 0:
            self.validate()
        self.call("on_step_end", step, result)
        if cfg.trainer.max_steps is not None and step >= cfg.trainer.max_steps:
            self.stop(StopKind.MAX_STEPS)

    def first_step_pending(self) -> bool:
        return "first_step_unix" not in self.timing

    def non_finite(self, step: int, result) -> None:
        """The update was not applied (weights stay clean); apply health.nan_policy."""
        health = self.c.cfg.health
        layer, bad, total = first_non_finite_gradient(self.c.module)
        loss = result.loss_sum.item() / max(result.count, 1)
        origin = (f"the loss on rank {self.c.rank} was {loss:.4g}, so another rank's batch produced it"
                  if torch.isfinite(torch.tensor(loss)) else f"the loss on rank {self.c.rank} was {loss}")
        what = (f"non-finite gradients at step {step} in {bad} of {total} parameter tensors, first {layer} "
                f"({origin}); the update was not applied")
        self.consecutive_skips += 1
        if health.nan_policy == "stop" or self.consecutive_skips > health.max_consecutive_skips:
            self.r.event(step, "non_finite", f"{what}. health.nan_policy={health.nan_policy}: stopping")
            self.stop(StopKind.NON_FINITE, f"non-finite loss at step {step}")
        else:
            self.r.event(step, "non_finite", f"{what}: update skipped (health.nan_policy=skip)")
        self.r.metrics(step, {"health/skipped_steps": float(self.consecutive_skips)})

    def flush_logs(self) -> None:
        """Reduce the pending log rows across ranks (a sync point) and report them; also the
        collective stop vote. Every rank calls it at the same step."""
        r = self.r
        flush = self.stats.flush(stop_vote=r.stop_reason() is not None, checkpoint_vote=r.take_notice())
        metric_set = self.c.batch_step.metric_set
        if metric_set and flush.rows:
            flush.rows[-1].metrics.update(metric_set.compute())  # collective, like the flush
        steps = sum(row.steps for row in flush.rows)
        for key, per_rank in flush.per_rank.items():  # run totals, for the summary's time split
            totals = self.time_totals.setdefault(key, [0.0] * len(per_rank))
            for rank, mean in enumerate(per_rank):
                totals[rank] += mean * steps
        for row in flush.rows:
            if not math.isfinite(row.loss) and self.c.cfg.health.nan_policy == "stop":
                # Reached only with a loss scaler (fp16), whose steps never report non-finite gradients.
                r.event(row.step, "non_finite", f"non-finite training loss by step {row.step}; stopping")
                self.stop(StopKind.NON_FINITE, f"non-finite loss at step {row.step}")
            values = row_scalars(row)
            if row is flush.rows[-1]:
                values.update(flush_scalars(flush, self.samples_per_step, self.c.cfg.trainer.per_rank_metrics_up_to))
            r.metrics(row.step, values)
            self.window.add(row)
        self.checkpoint_now = flush.checkpoint and not flush.stop  # callbacks/preemption.py acts on it
        if flush.stop:
            self.stopped_on_request = True
            self.stop(StopKind.REQUESTED, r.stop_reason() or "stop requested")

    def close_and_flush(self) -> None:
        if self.stats.steps_in_window:
            self.stats.close_row(self.state.step, self.c.optimizer.param_groups[0]["lr"], None)
        self.flush_logs()

    def validate(self) -> None:
        c, r, st = self.c, self.r, self.state
        if c.splits.val is None or self.last_val_step == st.step:
            return
        self.close_and_flush()  # the training window the generalisation gap is measured against
        self.pause()
        metrics = evaluate(c, c.splits.val, r, st.step, "val")
        self.resume()
        self.last_val_step = st.step
        st.last_val = metrics
        train = self.window.take(self.has_accuracy)
        r.metrics(st.step, {**metrics, **generalisation_gap(train, metrics)})
        self.call("on_validation_end", st.step, metrics, train)
        st.monitors = self.callback_states()

    def checkpoint(self) -> None:
        c, r, st = self.c, self.r, self.state
        if self.last_checkpoint_step == st.step:
            return
        # Every step up to the checkpoint is reported before it (a resume starts after it).
        self.close_and_flush()
        self.pause()
        r.progress(st.step, "checkpoint")
        st.monitors = self.callback_states()
        st.data_position = c.train_source.position(st.epoch, st.step_in_epoch * c.plan.accumulate)
        blocked_since = time.perf_counter()  # checkpoint/blocked_ms: from here until r.checkpoint returns
        payload = S.capture_payload(c.trainables, st, c.plan.world_size, best_model=self.best_weights)
        if payload is not None:
            if S.weights_finite(c.module):
                r.checkpoint(st.step, payload, {"epoch": st.epoch, "metrics": dict(st.last_val),
                                                "blocked_since": blocked_since})
            else:
                r.event(st.step, "checkpoint", "not written: the weights hold non-finite values")
        self.last_checkpoint_step = st.step
        self.resume()

    def pause(self) -> None:
        """Validation and checkpoints do not count as training time in throughput figures."""
        self.paused_at = time.perf_counter()

    def resume(self) -> None:
        paused = time.perf_counter() - self.paused_at
        self.stats.shift_clock(paused)
        self.throughput.shift_clock(paused)

    def finish(self) -> FitResult:
        r, st = self.r, self.state
        self.close_and_flush()  # the partial logging window
        if not self.stopped_on_request:  # asked to stop (Ctrl-C, pruning): checkpoint and go
            self.validate()
        self.checkpoint()  # the final state, whatever stopped the run
        metrics = dict(st.last_val)
        for callback in self.callbacks:
            metrics.update(callback.on_fit_end(self) or {})
        r.event(st.step, "stopped", self.stop_reason)
        if self.throughput.samples_per_sec is not None:
            self.timing["steady_samples_per_sec"] = self.throughput.samples_per_sec
        self.timing.update(time_split(self.time_totals))
        r.progress(st.step, "done")
        return FitResult(stop_reason=self.stop_reason, stop_kind=self.stop_kind, step=st.step, epoch=st.epoch,
                         metrics=metrics, timing=dict(self.timing), stopped_on_request=self.stopped_on_request)


def fit(c: Components, r: Reporter, state: Optional[S.TrainState] = None, best_weights=None,
        extra_callbacks: Sequence[CB.Callback] = ()) -> FitResult:
    return Loop(c, r, state or S.TrainState(), best_weights, extra_callbacks=extra_callbacks).fit()

