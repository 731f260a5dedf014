"""A search's trials: asks an Optuna study for the next point, composes it into a trial config
(validated like a single run), and tells the study how each trial ended. The trial scheduler runs them.

    run_search(cfg, base_overrides, sweep_dir)

A search interrupted (Ctrl-C) resumes when started again in the same sweep dir: finished trials
are kept, cut-short ones continue from their checkpoints.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

from optuna.trial import TrialState
from rich.console import Console

from orchestrator import config as C
from orchestrator.composition import compose
from orchestrator.driver.progress import make_console
from orchestrator.search.decisions import Then, Verdict, remaining_budget
from orchestrator.search.ledger import Ledger, TrialRecord
from orchestrator.search.scheduler import Sweep, Trial, TrialScheduler, new_stop_signal
from orchestrator.search.space import as_overrides, describe, suggest
from orchestrator.search.study import budget, open_study, recover_interrupted, requeue, search_space
from orchestrator.search.watch import ShouldPrune, TrialWatch

OPTUNA_STATE = {"completed": TrialState.COMPLETE, "pruned": TrialState.PRUNED}  # anything else: FAIL


def trial_overrides(base: List[str], params: Dict[str, Any], search: C.SearchConfig) -> List[str]:
    """The command line's overrides minus the search itself and the searched keys, plus the trial's."""
    def searched(override: str) -> bool:
        key = override.lstrip("+~").split("=", 1)[0]
        return key == "search" or key.startswith("search.") or key in params
    fixed = ["search=none"]
    if search.kind == "kfold":
        fixed.append(f"data.cv_folds={search.folds}")
    return [o for o in base if not searched(o)] + fixed + as_overrides(params)


class StudyTrials:
    """The trial source of a search: one Optuna trial per scheduler trial."""

    def __init__(self, cfg: C.Config, base_overrides: List[str], sweep_dir: Path):
        self.cfg, self.search, self.base, self.sweep_dir = cfg, cfg.search, list(base_overrides), Path(sweep_dir)
        self.space = search_space(self.search)
        self.lock = threading.Lock()  # the study is asked on the main thread and told from trial threads
        self.study = open_study(self.search, self.sweep_dir)

    def run_dir(self, number: int) -> Path:
        return self.sweep_dir / f"trial_{number:03d}"

    def resume_previous(self, ledger: Ledger) -> str:
        """Trials an earlier session cut short are queued again; returns what to tell (or "")."""
        stale = recover_interrupted(self.study)
        ledger.mark_unfinished("interrupted")
        for trial in stale:
            requeue(self.study, trial.params, resume_from=str(self.run_dir(trial.number)))
        done = len(ledger.finished())
        if not (done or stale):
            return ""
        return (f"Resuming the search in {self.sweep_dir}: {done} trial(s) finished, "
                f"{len(stale)} cut short (continuing from their checkpoints)")

    def headline(self, slots: int) -> str:
        return (f"Search ({self.search.kind}): {budget(self.search)} trials, up to {slots} gang(s) of "
                f"{self.cfg.scaling.num_workers} workers at once; sweep dir {self.sweep_dir}")

    def remaining(self, finished: int, running: int) -> int:
        return remaining_budget(budget(self.search), finished, running)

    def next_trial(self) -> Trial:
        with self.lock:
            optuna_trial = self.study.ask()
            params = suggest(optuna_trial, self.space)
        number = optuna_trial.number
        overrides = trial_overrides(self.base, params, self.search)
        # A trial cut short runs again in its own run dir, continuing from its newest checkpoint (if any).
        resume_from = optuna_trial.user_attrs.get("resume_from")
        run_dir = Path(resume_from) if resume_from else self.run_dir(number)
        if resume_from:
            overrides.append("trainer.resume=auto")
        trial_cfg = compose(overrides)  # validated like any run (on this thread: Hydra is not thread-safe)
        trial_cfg.name = run_dir.name
        stop = new_stop_signal()
        label = describe(params) + (f" (continuing {run_dir.name})" if resume_from else "")
        return Trial(number=number, params=params, run_dir=run_dir, label=label, cfg=trial_cfg, stop=stop,
                     watch=TrialWatch(self.search, stop, should_prune=self.pruner_of(optuna_trial)))

    def pruner_of(self, optuna_trial) -> ShouldPrune:
        """Reports each value to Optuna and asks its pruner (under the study's lock)."""
        def should_prune(step: int, value: float) -> bool:
            with self.lock:
                optuna_trial.report(value, step)
                return optuna_trial.should_prune()
        return should_prune

    def settle(self, trial: Trial, record: TrialRecord, verdict: Verdict) -> None:
        """Tell the study how the trial ended; queue it again if it is to run again."""
        state = OPTUNA_STATE.get(verdict.status, TrialState.FAIL)
        with self.lock:
            if verdict.then is Then.RUN_AGAIN:
                requeue(self.study, dict(self.study.trials[trial.number].params))
            elif verdict.then is Then.CONTINUE:
                requeue(self.study, dict(self.study.trials[trial.number].params), resume_from=record.run_dir)
            if state == TrialState.COMPLETE and record.value is not None:
                self.study.tell(trial.number, record.value)
            else:
                self.study.tell(trial.number, state=TrialState.FAIL if state == TrialState.COMPLETE else state)


def run_search(cfg: C.Config, base_overrides: List[str], sweep_dir: Path,
               console: Optional[Console] = None) -> Dict[str, Any]:
    console = console or make_console()
    source = StudyTrials(cfg, base_overrides, sweep_dir)
    ledger = Ledger(Path(sweep_dir) / "trials.json")
    resuming = source.resume_previous(ledger)
    if resuming:
        console.print(resuming, style="cyan", highlight=False, soft_wrap=True, markup=False)
    sweep = Sweep(sweep_dir=Path(sweep_dir), search=cfg.search, gang=cfg, max_concurrent=cfg.search.max_concurrent)
    return TrialScheduler(source, sweep, ledger, console).run()
