"""Hydra multirun's trials: a fixed list of jobs that Hydra prepared (run dir, saved config), run by
the trial scheduler. A job whose run dir already holds a completed run is not run again, and one
cut short continues from its newest checkpoint, so a multirun resumes in the same sweep dir."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from orchestrator import config as C
from orchestrator.driver.progress import make_console
from orchestrator.search.decisions import Then, Verdict
from orchestrator.search.ledger import Ledger, TrialRecord
from orchestrator.search.scheduler import Sweep, Trial, TrialScheduler

# A job's outcome for Hydra: its final metrics, or why it did not finish.
JobOutcome = Union[Dict[str, float], BaseException]
RAN = ("completed", "interrupted", "pruned")


@dataclass
class PreparedJob:
    number: int
    overrides: List[str]
    run_dir: Path
    cfg: C.Config


def already_completed(run_dir: Path) -> Optional[Dict[str, Any]]:
    summary = run_dir / "summary.json"
    if summary.exists():
        data = json.loads(summary.read_text())
        if data.get("status") == "completed":
            return data
    return None


def overrides_dict(overrides: List[str]) -> Dict[str, str]:
    return dict(o.split("=", 1) for o in overrides if "=" in o and not o.startswith("hydra."))


def varying_keys(jobs: List[PreparedJob]) -> List[str]:
    """The swept keys: those whose value differs between jobs (the table's columns)."""
    values: Dict[str, set] = {}
    for job in jobs:
        for key, value in overrides_dict(job.overrides).items():
            values.setdefault(key, set()).add(value)
    return [key for key, seen in values.items() if len(seen) > 1 or len(jobs) == 1]


def largest_gang(jobs: List[PreparedJob]) -> C.Config:
    """Room is counted for the largest gang of the sweep (a sweep may vary scaling.num_workers)."""
    return max(jobs, key=lambda j: j.cfg.scaling.num_workers * j.cfg.scaling.cpus_per_worker).cfg


class JobTrials:
    """The trial source of a multirun: the prepared jobs, in order."""

    def __init__(self, jobs: List[PreparedJob], sweep_dir: Path):
        self.jobs, self.sweep_dir = {job.number: job for job in jobs}, sweep_dir
        self.queue = list(jobs)
        self.varying = varying_keys(jobs)

    def headline(self, slots: int) -> str:
        return f"Multirun: {len(self.jobs)} jobs, up to {slots} gang(s) at once; sweep dir {self.sweep_dir}"

    def remaining(self, finished: int, running: int) -> int:
        return len(self.queue)

    def next_trial(self) -> Trial:
        job = self.queue.pop(0)
        params = {k: v for k, v in overrides_dict(job.overrides).items() if k in self.varying}
        label = " ".join(job.overrides)
        done = already_completed(job.run_dir)
        if done is not None:
            return Trial(number=job.number, params=params, run_dir=job.run_dir, label=label, completed=done)
        if any((job.run_dir / "checkpoints").glob("step-*.json")):
            job.cfg.trainer.resume = "auto"  # cut short earlier: continue from its newest checkpoint
        job.cfg.name = f"job_{job.number}"
        label += " (continuing)" if job.cfg.trainer.resume == "auto" else ""
        return Trial(number=job.number, params=params, run_dir=job.run_dir, label=label, cfg=job.cfg)

    def settle(self, trial: Trial, record: TrialRecord, verdict: Verdict) -> None:
        if verdict.then in (Then.RUN_AGAIN, Then.CONTINUE):
            self.queue.append(self.jobs[trial.number])


def job_outcomes(numbers: List[int], ledger: Ledger, errors: Dict[int, BaseException]) -> Dict[int, JobOutcome]:
    """Each job's final metrics; its error if it failed; "not run" if the multirun stopped first."""
    outcomes: Dict[int, JobOutcome] = {}
    for number in numbers:
        record = ledger.trials.get(number)
        if record is not None and record.status == "failed":
            outcomes[number] = errors.get(number) or RuntimeError(record.note)
        elif record is not None and record.status in RAN:
            outcomes[number] = record.metrics
        else:
            outcomes[number] = RuntimeError("not run (the multirun was interrupted)")
    return outcomes


def run_jobs(jobs: List[PreparedJob], sweep_dir: Path, max_concurrent: Optional[int]):
    """Train the prepared jobs as gangs, side by side while they fit, and write the ranked report.
    Returns each job's outcome and whether Ctrl-C cut the multirun short."""
    ledger = Ledger(sweep_dir / "trials.json", load=False)  # resumed by run dirs, not by records
    sweep = Sweep(sweep_dir=sweep_dir, search=jobs[0].cfg.search, gang=largest_gang(jobs),
                  max_concurrent=max_concurrent, noun="job",
                  resume_hint=f"Run the same command with hydra.sweep.dir={sweep_dir} to resume.")
    scheduler = TrialScheduler(JobTrials(jobs, sweep_dir), sweep, ledger, make_console())
    summary = scheduler.run()
    return job_outcomes([job.number for job in jobs], ledger, scheduler.errors), summary["interrupted"]
