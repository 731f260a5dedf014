"""Hydra launcher for multirun (``-m``): every job is a full data-parallel gang, and jobs run
concurrently while the Ray cluster has room for more than one gang (the rest queue).

Hydra's own Ray launcher runs each job as a single Ray task (no gang) and its basic launcher runs
jobs one after another; this one prepares every job exactly as Hydra does (run dir, saved
config) with ``run_job``, hands them to the trial scheduler a search uses too
(``orchestrator.search.jobs``), and turns their outcomes into Hydra's JobReturns. Jobs whose run dir
already holds a completed run are not run again, so a multirun interrupted with Ctrl-C resumes
when given the same ``hydra.sweep.dir``.
"""

# No "from __future__ import annotations": Hydra execs plugin modules outside sys.modules,
# where dataclasses cannot resolve string annotations.

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

EXIT_INTERRUPTED = 130  # as a single interrupted run exits


@dataclass
class GangLauncherConf:
    _target_: str = "hydra_plugins.gang_launcher.gang_launcher.GangLauncher"
    # Gangs at once; null: as many as the cluster holds.
    max_concurrent: Optional[int] = None


ConfigStore.instance().store(group="hydra/launcher", name="gang", node=GangLauncherConf)


def prepare(task_cfg: DictConfig):
    """run_job's task function: validate and freeze the job's config; training happens later."""
    from orchestrator.config.store import freeze
    from orchestrator.search.jobs import PreparedJob

    hydra_cfg = HydraConfig.get()
    return PreparedJob(number=hydra_cfg.job.num, overrides=list(hydra_cfg.overrides.task),
                       run_dir=Path(hydra_cfg.runtime.output_dir), cfg=freeze(task_cfg))


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
        returns = [self.prepare_job(initial_job_idx + idx, list(overrides))
                   for idx, overrides in enumerate(job_overrides)]
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        prepared = [ret for ret in returns if ret.status == JobStatus.COMPLETED]
        if prepared:
            self.train(prepared, sweep_dir)
        return returns

    def prepare_job(self, number: int, overrides: List[str]) -> JobReturn:
        """Hydra's own job set-up (run dir, saved config, validation), without training."""
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = number
            sweep_config.hydra.job.num = number
        ret = run_job(hydra_context=self.hydra_context, task_function=prepare, config=sweep_config,
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        if ret.status != JobStatus.COMPLETED:
            print(f"job {number} ({' '.join(filter_overrides(overrides))}): {ret._return_value}")
        return ret

    def train(self, prepared: List[JobReturn], sweep_dir: Path) -> None:
        """Runs the prepared jobs; each JobReturn then holds its job's final metrics (or its error)."""
        from orchestrator.search.jobs import run_jobs

        outcomes, interrupted = run_jobs([ret._return_value for ret in prepared], sweep_dir, self.max_concurrent)
        if interrupted:
            sys.exit(EXIT_INTERRUPTED)  # the table above shows what finished
        for ret in prepared:
            outcome = outcomes[ret._return_value.number]
            if isinstance(outcome, BaseException):
                ret.status, ret.return_value = JobStatus.FAILED, outcome
            else:
                ret.return_value = outcome
