"""The search section: what a hyperparameter search explores and how."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from orchestrator.config.errors import require, require_choice


@dataclass
class ParamConfig:
    """One searched key: a float or int range (log-uniform with log=true), or a choice of values.
    The key may be a value (optimizer.lr) or a config group (optimizer: choice [sgd, adam])."""
    type: str = "float"
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    values: List[Any] = field(default_factory=list)


SEARCH_KINDS = {"none", "grid", "random", "bayes", "kfold"}


@dataclass
class SearchConfig:
    # none: a single run. grid | random | bayes (Optuna TPE) | kfold (cross-validation over data.cv_fold).
    kind: str = "none"
    space: Dict[str, ParamConfig] = field(default_factory=dict)
    # Trials to finish (random, bayes); grid and kfold run every combination / fold.
    num_trials: int = 8
    metric: str = "val/accuracy"
    direction: str = "max"
    # A trial's value: the best its metric reached ("best"), or its last value ("last").
    scope: str = "best"
    # Gangs at once; null: as many as the cluster holds, the rest queue.
    max_concurrent: Optional[int] = None
    # none | median | halving (successive halving). Pruned trials stop at once and free their workers.
    pruner: str = "median"
    pruner_startup_trials: int = 2
    pruner_warmup_steps: int = 0
    seed: int = 0
    # Points to try first, e.g. [{optimizer.lr: 0.001}] (known good settings, a baseline).
    enqueue: List[Dict[str, Any]] = field(default_factory=list)
    folds: int = 5
    # Trials (and Hydra multirun jobs) of the same gang shape reuse a finished trial's workers and
    # process group instead of starting a new gang; each trial still builds its own model, optimizer
    # and data. A failed gang is never reused.
    warm_gangs: bool = True

    def __post_init__(self):
        require_choice("search.kind", self.kind, SEARCH_KINDS)
        require_choice("search.direction", self.direction, {"min", "max"})
        require_choice("search.scope", self.scope, {"best", "last"})
        require_choice("search.pruner", self.pruner, {"none", "median", "halving"})
        require(self.num_trials >= 1, "search.num_trials", "must be >= 1", self.num_trials)
        require(self.max_concurrent is None or self.max_concurrent >= 1, "search.max_concurrent",
                "must be >= 1 or null", self.max_concurrent)
        require(self.pruner_startup_trials >= 0, "search.pruner_startup_trials", "must be >= 0",
                self.pruner_startup_trials)
        require(self.folds >= 2, "search.folds", "must be >= 2", self.folds)
        if self.kind in ("grid", "random", "bayes"):
            require(bool(self.space), "search.space", f"must name at least one key for search.kind={self.kind}",
                    dict(self.space))
        for key, param in self.space.items():
            check_param(f"search.space.{key}", param, grid=self.kind == "grid")


def check_param(key: str, p: ParamConfig, grid: bool) -> None:
    require_choice(f"{key}.type", p.type, {"float", "int", "choice"})
    if p.type == "choice":
        require(len(p.values) > 0, f"{key}.values", "must list at least one value", p.values)
        return
    require(grid is False, f"{key}.type", "must be choice for search.kind=grid (a grid needs values)", p.type)
    require(p.low is not None and p.high is not None and p.low < p.high, f"{key}.low",
            "and .high must be numbers with low < high", [p.low, p.high])
    require(not p.log or p.low > 0, f"{key}.low", "must be > 0 with log=true", p.low)


