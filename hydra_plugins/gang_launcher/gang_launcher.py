"""Hydra launcher for multirun (``-m``): every job is a full data-parallel gang, and jobs run
concurrently while the Ray cluster has room for more than one gang (the rest queue).

Hydra's own Ray launcher runs each job as a single Ray task (no gang) and its basic launcher runs
jobs one after another; this one prepares every job exactly as Hydra does (run dir, saved
config) with ``run_job``, then trains them side by side through the search scheduler, and ends
with a ranked table. Jobs whose run dir already holds a completed run are not run again, so a
multirun interrupted with Ctrl-C resumes when given the same ``hydra.sweep.dir``.
"""

# No "from __future__ import annotations": Hydra execs plugin modules outside sys.modules,
# where dataclasses cannot resolve string annotations.

import json
import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


@dataclass
class GangLauncherConf:
    _target_: str = "hydra_plugins.gang_launcher.gang_launcher.GangLauncher"
    # Gangs at once; null: as many as the cluster holds.
    max_concurrent: Optional[int] = None


ConfigStore.instance().store(group="hydra/launcher", name="gang", node=GangLauncherConf)


@dataclass
class PreparedJob:
    number: int
    overrides: List[str]
    run_dir: Path
    cfg: Any  # orchestrator.config.Config


def prepare(task_cfg: DictConfig) -> PreparedJob:
    """run_job's task function: validate and freeze the job's config; training happens later."""
    from orchestrator.config.store import freeze

    hydra_cfg = HydraConfig.get()
    return PreparedJob(number=hydra_cfg.job.num, overrides=list(hydra_cfg.overrides.task),
                       run_dir=Path(hydra_cfg.runtime.output_dir), cfg=freeze(task_cfg))


def already_completed(run_dir: Path) -> Optional[Dict[str, Any]]:
    summary = run_dir / "summary.json"
    if summary.exists():
        data = json.loads(summary.read_text())
        if data.get("status") == "completed":
            return data
    return None


class GangLauncher(Launcher):
    def __init__(self, max_concurrent: Optional[int] = None) -> None:
        self.max_concurrent = max_concurrent
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        returns, jobs = [], []
        for idx, overrides in enumerate(job_overrides):
            number = initial_job_idx + idx
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = number
                sweep_config.hydra.job.num = number
            ret = run_job(hydra_context=self.hydra_context, task_function=prepare, config=sweep_config,
                          job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
            returns.append(ret)
            if ret.status == JobStatus.COMPLETED:
                jobs.append(ret._return_value)
            else:
                print(f"job {number} ({' '.join(filter_overrides(overrides))}): {ret._return_value}")
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        if jobs:
            results = run_jobs(jobs, sweep_dir, self.max_concurrent)
            for ret in returns:
                if ret.status == JobStatus.COMPLETED:
                    job = ret._return_value
                    outcome = results[job.number]
                    if isinstance(outcome, BaseException):
                        ret.status, ret.return_value = JobStatus.FAILED, outcome
                    else:
                        ret.return_value = outcome
        return returns


def run_jobs(jobs: List[PreparedJob], sweep_dir: Path, max_concurrent: Optional[int]) -> Dict[int, Any]:
    """Train the prepared jobs concurrently; returns each job's final metrics (or its exception)."""
    from orchestrator.cluster import RaySession, prefer_loopback
    from orchestrator.search import report
    from orchestrator.signals import interrupts_call

    first = jobs[0].cfg
    prefer_loopback(first.cluster)  # before anything imports ray
    multirun = Multirun(jobs, sweep_dir)
    # Our handler goes in after Ray starts: ray.init installs its own SIGTERM handler.
    with RaySession(first.cluster), interrupts_call(multirun.on_interrupt):
        multirun.run(max_concurrent)
    trials = list(multirun.records.values())
    report.write(trials, first.search, sweep_dir, multirun.console)
    report.hparams_experiment(sweep_dir, trials, first.search, [k for t in trials for k in t.params if "." not in k])
    for job in jobs:
        multirun.results.setdefault(job.number, RuntimeError("not run (the multirun was interrupted)"))
    if multirun.interrupted.is_set():
        sys.exit(130)  # as a single interrupted run does; the table above shows what finished
    return multirun.results


class Multirun:
    """Runs prepared jobs as gangs, as many at once as the cluster holds."""

    def __init__(self, jobs: List[PreparedJob], sweep_dir: Path):
        from orchestrator.progress import make_console

        self.jobs, self.sweep_dir = jobs, sweep_dir
        self.metric = jobs[0].cfg.search.metric
        self.varying = varying_keys(jobs)
        self.console = make_console()
        self.results: Dict[int, Any] = {}
        self.records: Dict[int, Any] = {}
        self.stops: Dict[int, Any] = {}
        self.interrupted = threading.Event()

    def say(self, text: str, style: Optional[str] = None) -> None:
        self.console.print(text, style=style, highlight=False, soft_wrap=True, markup=False)

    def on_interrupt(self, name: str) -> None:
        self.interrupted.set()
        self.say(f"{name}: no new jobs; running jobs checkpoint and stop. Run the same command with "
                 f"hydra.sweep.dir={self.sweep_dir} to resume.", "bold yellow")
        for stop in self.stops.values():
            stop.request(f"interrupted ({name})")

    def run(self, max_concurrent: Optional[int]) -> None:
        from orchestrator.search.driver import gangs_that_fit
        from orchestrator.search.scheduler import TrialScheduler

        # Room for the largest gang of the sweep (a sweep may vary trainer.num_workers).
        largest = max(self.jobs, key=lambda j: j.cfg.trainer.num_workers * j.cfg.cluster.cpus_per_worker).cfg
        slots = max_concurrent or gangs_that_fit(largest)
        scheduler = TrialScheduler(slots)
        self.say(f"Multirun: {len(self.jobs)} jobs, up to {slots} gang(s) at once; sweep dir {self.sweep_dir}",
                 "bold")
        queue = list(self.jobs)
        while queue or scheduler.running:
            while queue and scheduler.free > 0 and not self.interrupted.is_set():
                self.start(queue.pop(0), scheduler)
            if self.interrupted.is_set() and not scheduler.running:
                break
            finished = scheduler.wait(timeout=0.5)
            if finished is not None:
                self.finish(finished)

    def start(self, job: PreparedJob, scheduler) -> None:
        from orchestrator.launcher import launch
        from orchestrator.search.ledger import TrialRecord
        from orchestrator.supervisor import StopSignal

        params = {k: v for k, v in overrides_dict(job.overrides).items() if k in self.varying}
        record = self.records[job.number] = TrialRecord(job.number, params, str(job.run_dir))
        done = already_completed(job.run_dir)
        if done is not None:
            self.say(f"[job {job.number}] already completed: {' '.join(job.overrides)}")
            self.results[job.number] = done["metrics"]
            self.close_record(record, "completed", done["metrics"], done["steps"])
            return
        if any((job.run_dir / "checkpoints").glob("step-*.json")):
            job.cfg.trainer.resume = "auto"  # cut short earlier: continue from its newest checkpoint
        self.say(f"[job {job.number}] started: {' '.join(job.overrides)}"
                 + (" (continuing)" if job.cfg.trainer.resume == "auto" else ""))
        stop = self.stops[job.number] = StopSignal()
        job.cfg.name = f"job_{job.number}"
        scheduler.start(job.number, lambda: launch(job.cfg, job.run_dir, stop=stop, show_progress=False,
                                                   hparams_experiment=False))

    def finish(self, finished) -> None:
        from orchestrator.search import report

        record = self.records[finished.key]
        if finished.error is not None:
            self.results[finished.key] = finished.error
            self.close_record(record, "failed", {}, 0, str(finished.error).splitlines()[0][:300])
        else:
            result = finished.result
            self.results[finished.key] = result.metrics
            self.close_record(record, result.status, result.metrics, result.summary.get("steps", 0))
        self.say(f"[job {finished.key}] {record.status}: {self.metric}={report.fmt(record.value)} "
                 f"({record.ended - record.started:.1f}s)")

    def close_record(self, record, status: str, metrics: Dict[str, float], steps: int, note: str = "") -> None:
        record.status, record.metrics, record.steps, record.note = status, metrics, steps, note
        record.value = metrics.get(self.metric)
        record.ended = time.time()


def overrides_dict(overrides: List[str]) -> Dict[str, str]:
    return dict(o.split("=", 1) for o in filter_overrides(overrides) if "=" in o)


def varying_keys(jobs: List[PreparedJob]) -> List[str]:
    """The swept keys: those whose value differs between jobs (the table's columns)."""
    values: Dict[str, set] = {}
    for job in jobs:
        for key, value in overrides_dict(job.overrides).items():
            values.setdefault(key, set()).add(value)
    return [key for key, seen in values.items() if len(seen) > 1 or len(jobs) == 1]
