"""The one trial scheduler behind both a search and Hydra's multirun.

A source hands it trials (an Optuna study asking for the next point, or a fixed list of prepared
Hydra jobs); it runs each trial as a data-parallel gang (``orchestrator.driver.launcher.launch``) on a thread
while the cluster has room, fans Ctrl-C out to every running trial as a stop request, records each
trial in the ledger (``trials.json``) and ends with the ranked report. What to do next and what an
ending means are pure decisions (``decisions.py``); the source decides only what is its own: which
trial comes next, and what to tell its study when one ends.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Protocol

from rich.console import Console

from orchestrator import config as C
from orchestrator.search import report
from orchestrator.driver.gang_pool import warm_gangs
from orchestrator.search.decisions import (Ending, Step, Then, Verdict, first_line, judge, next_step,
                                           slots_after_placement_timeout, trial_start_s)
from orchestrator.search.ledger import Ledger, TrialRecord
from orchestrator.search.threads import Finished, TrialThreads
from orchestrator.search.watch import TrialWatch

if TYPE_CHECKING:  # supervisor imports ray: keep it off a Hydra job's import path (a Hydra job imports this)
    from orchestrator.driver.gang_pool import GangPool
    from orchestrator.driver.supervisor import StopSignal
    from orchestrator.search.verdicts import Referee

POLL_S = 0.5
STYLES = {"completed": "green", "pruned": "yellow"}


def new_stop_signal() -> "StopSignal":
    from orchestrator.driver.supervisor import StopSignal

    return StopSignal()


@dataclass
class Trial:
    """One trial as its source prepared it: a validated config to run as a gang in its run dir."""
    number: int
    params: Dict[str, Any]
    run_dir: Path
    label: str                                    # what "[trial N] started: ..." shows
    cfg: Optional[C.Config] = None                # None only with ``completed``
    stop: "StopSignal" = field(default_factory=new_stop_signal)
    watch: Optional[TrialWatch] = None            # its value when set; else its final metric
    completed: Optional[Dict[str, Any]] = None    # summary of an earlier session's finished run: not rerun


class TrialSource(Protocol):
    def headline(self, slots: int) -> str: ...
    def remaining(self, finished: int, running: int) -> int: ...
    def next_trial(self) -> Trial: ...
    def settle(self, trial: Trial, record: TrialRecord, verdict: Verdict) -> None: ...


@dataclass
class Sweep:
    """What the scheduler needs besides its trials."""
    sweep_dir: Path
    search: C.SearchConfig        # the metric, its direction: trial values and the report
    gang: C.Config                # the largest gang: its cluster, and how many gangs fit at once
    max_concurrent: Optional[int] = None
    noun: str = "trial"
    resume_hint: str = "Run the same command again to resume."


def gangs_that_fit(cfg: C.Config) -> int:
    """How many gangs of this config the cluster holds at once (at least one)."""
    import ray

    total = ray.cluster_resources()
    per_gang_cpu = cfg.scaling.num_workers * cfg.scaling.cpus_per_worker
    fit = int(total.get("CPU", 0) // per_gang_cpu)
    if cfg.scaling.gpus_per_worker:
        fit = min(fit, int(total.get("GPU", 0) // (cfg.scaling.num_workers * cfg.scaling.gpus_per_worker)))
    return max(1, fit)


class TrialScheduler:
    def __init__(self, source: TrialSource, sweep: Sweep, ledger: Ledger, console: Console):
        self.source, self.sweep, self.ledger, self.console = source, sweep, ledger, console
        self.trials: Dict[int, Trial] = {}   # running
        self.errors: Dict[int, BaseException] = {}  # what failed trials raised
        self.interrupted = threading.Event()
        self.pool: Optional["GangPool"] = None       # warm gangs (search.warm_gangs), for the length of run()
        self.referee: Optional["Referee"] = None     # pruning verdicts, started with the first trial that prunes
        self.last_gang_end: Optional[float] = None   # when the latest finished trial stopped using its gang
        self.start_from: Dict[int, Optional[float]] = {}  # per running trial: last_gang_end when it started

    def run(self) -> Dict[str, Any]:
        """Every trial run (or the run cut short by Ctrl-C); returns the report's summary."""
        from orchestrator.driver.cluster import RaySession
        from orchestrator.driver.signals import interrupts_call

        # Our handler goes in after Ray starts: ray.init installs its own SIGTERM handler.
        with RaySession(self.sweep.gang.cluster), interrupts_call(self.on_interrupt), \
                warm_gangs(self.sweep.search.warm_gangs) as self.pool:  # closed (idle gangs shut) on any exit
            threads = TrialThreads(self.sweep.max_concurrent or gangs_that_fit(self.sweep.gang))
            self.say(self.source.headline(threads.slots), "bold")
            try:
                self.loop(threads)
            finally:
                if self.referee is not None:
                    self.referee.close()
        return self.report()

    def loop(self, threads: TrialThreads) -> None:
        while True:
            step = next_step(threads.free, self.interrupted.is_set(),
                             self.source.remaining(len(self.ledger.finished()), len(threads.running)),
                             len(threads.running))
            if step is Step.END:
                return
            if step is Step.START:
                self.start(self.source.next_trial(), threads)
                continue
            finished = threads.wait(timeout=POLL_S)
            if finished is not None:
                self.finish(finished, threads)

    def start(self, trial: Trial, threads: TrialThreads) -> None:
        from orchestrator.driver.launcher import launch

        record = TrialRecord(number=trial.number, params=trial.params, run_dir=str(trial.run_dir))
        if trial.completed is not None:
            self.say(f"[{self.sweep.noun} {trial.number}] already completed: {trial.label}")
            self.close(record, trial, metrics=trial.completed["metrics"], steps=trial.completed["steps"])
            record.status = "completed"
            self.ledger.put(record)
            return
        self.ledger.put(record)
        self.trials[trial.number] = trial
        self.say(f"[{self.sweep.noun} {trial.number}] started: {trial.label}")
        verdicts = self.verdicts_for(trial)
        self.start_from[trial.number] = self.last_gang_end
        threads.start(trial.number, lambda: launch(trial.cfg, trial.run_dir, stop=trial.stop, observer=trial.watch,
                                                   show_progress=False, hparams_experiment=False,
                                                   gang_pool=self.pool, verdicts=verdicts))

    def verdicts_for(self, trial: Trial):
        """A trial with a pruner gets a channel for its rank 0 to ask for verdicts (search/verdicts.py)."""
        if trial.watch is None or trial.watch.should_prune is None or self.sweep.search.pruner == "none":
            return None
        if self.referee is None:
            from orchestrator.search.verdicts import Referee

            self.referee = Referee()
        return self.referee.channel(trial.number, self.sweep.search.metric, trial.watch.verdict)

    def note_gang(self, record: TrialRecord, summary: Dict[str, Any], previous_end: Optional[float]) -> None:
        """Whether the trial's gang was warm, and its start time (from the previous trial's gang end)."""
        timing = summary.get("timing", {})
        record.warm_gang = bool(summary.get("gang", {}).get("warm"))
        record.start_s = trial_start_s(previous_end, timing.get("first_step_unix"))
        released = timing.get("gang_released_unix")
        if released is not None:
            self.last_gang_end = max(self.last_gang_end or 0.0, released)

    def finish(self, finished: Finished, threads: TrialThreads) -> None:
        from orchestrator.driver.worker_group import PlacementTimeout

        trial, result = self.trials.pop(finished.key), finished.result
        record = self.ledger.trials[trial.number]
        self.close(record, trial, metrics=result.metrics if result else {},
                   steps=result.summary.get("steps", 0) if result else 0)
        if self.referee is not None:
            self.referee.forget(trial.number)
        previous_end = self.start_from.pop(trial.number, None)
        if result is not None:
            self.note_gang(record, result.summary, previous_end)
        verdict = judge(Ending(error=None if finished.error is None else first_line(finished.error),
                               placement_timeout=isinstance(finished.error, PlacementTimeout),
                               run_status=result.status if result else "",
                               pruned_at=trial.watch.pruned_at if trial.watch else None,
                               others_running=len(threads.running)))
        record.status, record.note = verdict.status, verdict.note
        if verdict.status == "failed" and finished.error is not None:
            self.errors[trial.number] = finished.error
        self.ledger.put(record)
        self.source.settle(trial, record, verdict)
        if verdict.then is Then.END_SEARCH:
            from orchestrator.driver.launcher import RunFailed

            raise RunFailed(f"no {self.sweep.noun} of this sweep can run: {finished.error}", {})
        if verdict.then is Then.RUN_AGAIN:
            threads.slots = slots_after_placement_timeout(len(threads.running))
        self.say_ended(record)

    def close(self, record: TrialRecord, trial: Trial, metrics: Dict[str, float], steps: int) -> None:
        record.ended, record.metrics, record.steps = time.time(), metrics, steps
        record.value = trial.watch.value if trial.watch else metrics.get(self.sweep.search.metric)

    def say_ended(self, record: TrialRecord) -> None:
        seconds = record.ended - record.started
        self.say(f"[{self.sweep.noun} {record.number}] {record.status}: {self.sweep.search.metric}="
                 f"{report.fmt(record.value)} ({seconds:.1f}s){' - ' + record.note if record.note else ''}",
                 STYLES.get(record.status, "red"))

    def on_interrupt(self, name: str) -> None:
        noun = self.sweep.noun
        if self.interrupted.is_set():
            self.say(f"{name} again: stopping every {noun} now", "bold red")
        else:
            self.say(f"{name}: no new {noun}s; running {noun}s stop at their next step boundary and "
                     f"checkpoint (again to stop at once). {self.sweep.resume_hint}", "bold yellow")
        self.interrupted.set()
        for trial in list(self.trials.values()):
            trial.stop.request(f"interrupted ({name})")

    def report(self) -> Dict[str, Any]:
        trials = list(self.ledger.trials.values())
        summary = report.write(trials, self.sweep.search, self.sweep.sweep_dir, self.console)
        groups = sorted({k for t in trials for k in t.params if "." not in k})  # config groups, e.g. optimizer
        report.hparams_experiment(self.sweep.sweep_dir, trials, self.sweep.search, groups)
        summary["interrupted"] = self.interrupted.is_set()
        return summary

    def say(self, text: str, style: str = "") -> None:
        self.console.print(text, style=style or None, highlight=False, soft_wrap=True, markup=False)
