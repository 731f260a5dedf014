"""The Optuna study behind a search: sampler, pruner, a journal file in the sweep dir (so a search
resumes), and the trials' bookkeeping across interruptions."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from orchestrator import config as C
from orchestrator.search.space import choice_label, grid_points

STUDY_NAME = "search"


def search_space(search: C.SearchConfig) -> Dict[str, C.ParamConfig]:
    if search.kind == "kfold":
        return {"data.cv_fold": C.ParamConfig(type="choice", values=list(range(search.folds)))}
    return dict(search.space)


def make_sampler(search: C.SearchConfig, trials_so_far: int = 0) -> optuna.samplers.BaseSampler:
    # A resumed search seeds past its earlier trials: the same seed would replay the same points.
    seed = search.seed + trials_so_far
    if search.kind == "bayes":
        # constant_liar: concurrent trials see each other as pending, so they do not all sample one spot.
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True,
                                          n_startup_trials=max(2, min(10, search.num_trials // 3)))
    # Grid and k-fold points are enqueued up front; random fills in for random search.
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(search: C.SearchConfig) -> optuna.pruners.BasePruner:
    if search.kind == "kfold" or search.pruner == "none":  # folds are not competitors
        return optuna.pruners.NopPruner()
    if search.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=search.pruner_startup_trials,
                                       n_warmup_steps=search.pruner_warmup_steps)


def open_study(search: C.SearchConfig, sweep_dir: Path) -> optuna.Study:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "study.journal")))
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, sampler=make_sampler(search),
                                pruner=make_pruner(search), load_if_exists=True,
                                direction="maximize" if search.direction == "max" else "minimize")
    study.sampler = make_sampler(search, trials_so_far=len(study.trials))
    if not study.trials:  # a new search: the points to try first
        space = search_space(search)
        points = grid_points(space) if search.kind in ("grid", "kfold") else list(search.enqueue)
        for point in points:
            study.enqueue_trial({k: choice_label(v) if k in space and space[k].type == "choice" else v
                                 for k, v in point.items()})
    return study


def budget(search: C.SearchConfig) -> int:
    if search.kind in ("grid", "kfold"):
        return len(grid_points(search_space(search)))
    return search.num_trials


def recover_interrupted(study: optuna.Study) -> List[optuna.trial.FrozenTrial]:
    """Trials left RUNNING by an interrupted search are closed (FAIL in Optuna's books) and returned,
    so the caller can queue them again, continuing from their checkpoints."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL)
    return stale


def requeue(study: optuna.Study, params: Dict[str, Any], resume_from: str = "") -> None:
    study.enqueue_trial(params, user_attrs={"resume_from": resume_from} if resume_from else None)
