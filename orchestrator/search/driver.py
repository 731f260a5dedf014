"""Runs a search: asks Optuna for trials, runs each as its own gang (concurrently while the cluster
has room), prunes losers from their intermediate validation metrics, and reports.

    run_search(cfg, base_overrides, sweep_dir)

Trials are composed from the same config and command line, plus their parameters, so every trial
is validated like a single run. A search interrupted (Ctrl-C) resumes when started again in the same
sweep dir: finished trials are kept, cut-short ones continue from their checkpoints.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from rich.console import Console

from orchestrator import config as C
from orchestrator.cluster import RaySession
from orchestrator.progress import make_console
from orchestrator.search import report
from orchestrator.search.ledger import Ledger, TrialRecord
from orchestrator.search.scheduler import TrialScheduler
from orchestrator.search.space import as_overrides, describe, suggest
from orchestrator.search.study import budget, open_study, recover_interrupted, requeue, search_space
from orchestrator.signals import interrupts_call
from orchestrator.supervisor import StopSignal

POLL_S = 0.5


def gangs_that_fit(cfg: C.Config) -> int:
    """How many gangs of this config the cluster holds at once (at least one)."""
    import ray

    total = ray.cluster_resources()
    per_gang_cpu = cfg.trainer.num_workers * cfg.cluster.cpus_per_worker
    fit = int(total.get("CPU", 0) // per_gang_cpu)
    if cfg.cluster.gpus_per_worker:
        fit = min(fit, int(total.get("GPU", 0) // (cfg.trainer.num_workers * cfg.cluster.gpus_per_worker)))
    return max(1, fit)


def trial_overrides(base: List[str], params: Dict[str, Any], search: C.SearchConfig) -> List[str]:
    """The command line's overrides minus the search itself and the searched keys, plus the trial's."""
    def searched(override: str) -> bool:
        key = override.lstrip("+~").split("=", 1)[0]
        return key == "search" or key.startswith("search.") or key in params
    fixed = ["search=none"]
    if search.kind == "kfold":
        fixed.append(f"data.cv_folds={search.folds}")
    return [o for o in base if not searched(o)] + fixed + as_overrides(params)


@dataclass
class TrialWatch:
    """Feeds a trial's validation metric to Optuna as it arrives; asks the pruner; stops losers."""
    trial: Any
    search: C.SearchConfig
    stop: StopSignal
    lock: threading.Lock
    best: Optional[float] = None
    last: Optional[float] = None
    pruned_at: Optional[int] = None

    def __call__(self, step: int, values: Dict[str, float]) -> None:
        if self.search.metric not in values:
            return
        value = values[self.search.metric]
        self.last = value
        if self.best is None or (value > self.best if self.search.direction == "max" else value < self.best):
            self.best = value
        with self.lock:
            self.trial.report(value, step)
            prune = self.trial.should_prune()
        if prune and self.pruned_at is None and not self.stop.requested:
            self.pruned_at = step
            self.stop.request(f"pruned at step {step} ({self.search.metric} {value:.4g})")

    @property
    def value(self) -> Optional[float]:
        return self.best if self.search.scope == "best" else self.last


class Search:
    def __init__(self, cfg: C.Config, base_overrides: List[str], sweep_dir: Path, console: Console):
        from orchestrator.api import compose

        self.cfg, self.search, self.base, self.sweep_dir = cfg, cfg.search, list(base_overrides), Path(sweep_dir)
        self.console = console
        self.compose = compose
        self.space = search_space(self.search)
        self.lock = threading.Lock()
        self.ledger = Ledger(self.sweep_dir / "trials.json")
        self.study = open_study(self.search, self.sweep_dir)
        self.watches: Dict[int, TrialWatch] = {}
        self.stops: Dict[int, StopSignal] = {}
        self.interrupted = threading.Event()

    def run_dir(self, number: int) -> Path:
        return self.sweep_dir / f"trial_{number:03d}"

    def resume_previous(self) -> None:
        stale = recover_interrupted(self.study)
        self.ledger.mark_unfinished("interrupted")
        for trial in stale:
            requeue(self.study, trial.params, resume_from=str(self.run_dir(trial.number)))
        done = len(self.ledger.finished())
        if done or stale:
            self.say(f"Resuming the search in {self.sweep_dir}: {done} trial(s) finished, "
                     f"{len(stale)} cut short (continuing from their checkpoints)", "cyan")

    def remaining(self, scheduler: TrialScheduler) -> int:
        return budget(self.search) - len(self.ledger.finished()) - len(scheduler.running)

    def run(self) -> Dict[str, Any]:
        self.resume_previous()
        slots = self.search.max_concurrent or gangs_that_fit(self.cfg)
        scheduler = TrialScheduler(slots)
        self.say(f"Search ({self.search.kind}): {budget(self.search)} trials, up to {slots} gang(s) of "
                 f"{self.cfg.trainer.num_workers} workers at once; sweep dir {self.sweep_dir}", "bold")
        with interrupts_call(self.on_interrupt):
            while True:
                while scheduler.free > 0 and not self.interrupted.is_set() and self.remaining(scheduler) > 0:
                    self.start_trial(scheduler)
                if not scheduler.running:
                    break
                finished = scheduler.wait(timeout=POLL_S)
                if finished is not None:
                    self.finish_trial(finished, scheduler)
        trials = list(self.ledger.trials.values())
        summary = report.write(trials, self.search, self.sweep_dir, self.console)
        groups = [k for k in self.space if "." not in k]
        report.hparams_experiment(self.sweep_dir, trials, self.search, groups)
        summary["interrupted"] = self.interrupted.is_set()
        return summary

    def start_trial(self, scheduler: TrialScheduler) -> None:
        from orchestrator.launcher import launch

        with self.lock:
            trial = self.study.ask()
            params = suggest(trial, self.space)
        number = trial.number
        overrides = trial_overrides(self.base, params, self.search)
        # A trial cut short runs again in its own run dir, continuing from its newest checkpoint (if any).
        resume_from = trial.user_attrs.get("resume_from")
        run_dir = Path(resume_from) if resume_from else self.run_dir(number)
        if resume_from:
            overrides.append("trainer.resume=auto")
        trial_cfg = self.compose(overrides)  # validated like any run (on this thread: Hydra is not thread-safe)
        trial_cfg.name = run_dir.name
        stop = StopSignal()
        watch = TrialWatch(trial, self.search, stop, self.lock)
        self.watches[number], self.stops[number] = watch, stop
        self.ledger.put(TrialRecord(number=number, params=params, run_dir=str(run_dir)))
        self.say(f"[trial {number}] started: {describe(params)}" + (f" (continuing {run_dir.name})"
                                                                   if resume_from else ""))
        scheduler.start(number, lambda: launch(trial_cfg, run_dir, stop=stop, observer=watch,
                                               show_progress=False, hparams_experiment=False))

    def finish_trial(self, finished, scheduler: TrialScheduler) -> None:
        from optuna.trial import TrialState

        from orchestrator.launcher import RunFailed
        from orchestrator.worker_group import PlacementTimeout

        number, watch = finished.key, self.watches.pop(finished.key)
        record = self.ledger.trials[number]
        record.ended, record.value = time.time(), watch.value
        result = finished.result
        if result is not None:
            record.metrics, record.steps = result.metrics, result.summary.get("steps", 0)
        if isinstance(finished.error, PlacementTimeout) and not scheduler.running:
            # Not even one gang fits, with the cluster otherwise idle: waiting would loop forever.
            record.status, record.note = "failed", "the cluster cannot hold one gang"
            self.ledger.put(record)
            with self.lock:
                self.study.tell(number, state=TrialState.FAIL)
            raise RunFailed(f"no trial of this search can run: {finished.error}", {})
        if isinstance(finished.error, PlacementTimeout):
            # The cluster holds fewer gangs than estimated: run fewer at once, and this one later.
            scheduler.slots = max(1, len(scheduler.running))
            record.status, record.note = "requeued", "no room for the gang; queued again"
            state = TrialState.FAIL
            with self.lock:
                requeue(self.study, dict(self.study.trials[number].params))
        elif finished.error is not None:
            record.status, record.note, state = "failed", str(finished.error).splitlines()[0][:300], TrialState.FAIL
        elif watch.pruned_at is not None and result.status == "interrupted":
            record.status, record.note, state = "pruned", f"pruned at step {watch.pruned_at}", TrialState.PRUNED
        elif result.status == "interrupted":
            # Cut short by Ctrl-C: queued again, to continue from its checkpoint when the search resumes.
            record.status, record.note, state = "interrupted", "queued again", TrialState.FAIL
            with self.lock:
                requeue(self.study, dict(self.study.trials[number].params), resume_from=record.run_dir)
        else:
            record.status, state = "completed", TrialState.COMPLETE
        with self.lock:
            if state == TrialState.COMPLETE and record.value is not None:
                self.study.tell(number, record.value)
            else:
                self.study.tell(number, state=state if state != TrialState.COMPLETE else TrialState.FAIL)
        self.ledger.put(record)
        value = "-" if record.value is None else f"{record.value:.4f}"
        self.say(f"[trial {number}] {record.status}: {self.search.metric}={value} "
                 f"({record.ended - record.started:.1f}s){' - ' + record.note if record.note else ''}",
                 {"completed": "green", "pruned": "yellow"}.get(record.status, "red"))

    def on_interrupt(self, name: str) -> None:
        if self.interrupted.is_set():
            self.say(f"{name} again: stopping every trial now", "bold red")
        else:
            self.say(f"{name}: no new trials; running trials stop at their next step boundary and "
                     "checkpoint (again to stop at once). Run the same command again to resume.", "bold yellow")
        self.interrupted.set()
        for stop in list(self.stops.values()):
            stop.request(f"interrupted ({name})")

    def say(self, text: str, style: str = "") -> None:
        self.console.print(text, style=style or None, highlight=False, soft_wrap=True, markup=False)


def run_search(cfg: C.Config, base_overrides: List[str], sweep_dir: Path,
               console: Optional[Console] = None) -> Dict[str, Any]:
    with RaySession(cfg.cluster):
        return Search(cfg, base_overrides, sweep_dir, console or make_console()).run()
