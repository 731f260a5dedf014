"""Watches one trial's validation metric as it arrives: keeps its best and last value, and asks a
pruner (if any) whether to stop the trial early."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, Optional, Set

from orchestrator import config as C

if TYPE_CHECKING:  # supervisor imports ray: keep it off a Hydra job's import path
    from orchestrator.driver.supervisor import StopSignal

# (step, value) -> prune now? Called on the driver as each validation result arrives.
ShouldPrune = Callable[[int, float], bool]


def better(value: float, than: Optional[float], direction: str) -> bool:
    return than is None or (value > than if direction == "max" else value < than)


@dataclass
class TrialWatch:
    """A launch observer: ``watch(step, values)`` for every batch of reduced metrics."""
    search: C.SearchConfig
    stop: "StopSignal"
    should_prune: Optional[ShouldPrune] = None
    best: Optional[float] = None
    last: Optional[float] = None
    pruned_at: Optional[int] = None
    # A validation arrives twice: from rank 0 asking for its verdict (verdicts.py) and with the run's
    # records; the pruner is asked once per step. The two come on different driver threads.
    judged: Set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __call__(self, step: int, values: Dict[str, float]) -> None:
        if self.search.metric not in values:
            return
        with self.lock:
            if step in self.judged:
                return
            self.judged.add(step)
            self.see(step, values[self.search.metric])

    def see(self, step: int, value: float) -> None:
        self.last = value
        if better(value, self.best, self.search.direction):
            self.best = value
        prune = self.should_prune is not None and self.should_prune(step, value)
        if prune and self.pruned_at is None and not self.stop.requested:
            self.pruned_at = step
            self.stop.request(f"pruned at step {step} ({self.search.metric} {value:.4g})")

    def verdict(self, step: int, values: Dict[str, float]) -> bool:
        """Rank 0's question after a validation: is the trial pruned (at this step or before)?"""
        self(step, values)
        return self.pruned_at is not None

    @property
    def value(self) -> Optional[float]:
        """The trial's value: the best its metric reached, or its last (``search.scope``)."""
        return self.best if self.search.scope == "best" else self.last
