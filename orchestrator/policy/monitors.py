"""Decisions taken at each validation: early stopping, the overfitting signal, the best model.

Pure: they see only reduced (hence identical on every rank) numbers, so all
ranks take the same decision without talking. Their state is plain numbers,
saved in checkpoints (``TrainState.monitors``) so a resumed run remembers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional

from orchestrator import config as C


def improved(value: float, best: Optional[float], mode: str, min_delta: float = 0.0) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value < best - min_delta if mode == "min" else value > best + min_delta


@dataclass
class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` validations."""
    monitor: str
    mode: str
    patience: int
    min_delta: float = 0.0
    best: Optional[float] = None
    bad_validations: int = 0

    def update(self, metrics: Dict[str, float]) -> Optional[str]:
        if self.monitor not in metrics:
            return None
        value = metrics[self.monitor]
        if improved(value, self.best, self.mode, self.min_delta):
            self.best, self.bad_validations = value, 0
            return None
        self.bad_validations += 1
        if self.bad_validations >= self.patience:
            return (f"{self.monitor} did not improve on {self.best:.6g} for "
                    f"{self.bad_validations} validations (patience {self.patience})")
        return None


@dataclass
class OverfittingDetector:
    """Fires when validation loss rose while training loss fell, ``patience`` validations in a row."""
    patience: int
    streak: int = 0
    fired: bool = False
    previous: Optional[List[float]] = None  # [train_loss, val_loss] at the previous validation

    def update(self, train_loss: Optional[float], val_loss: Optional[float]) -> Optional[str]:
        if train_loss is None or val_loss is None:
            return None
        if self.previous is not None:
            prev_train, prev_val = self.previous
            diverging = val_loss > prev_val and train_loss < prev_train
            self.streak = self.streak + 1 if diverging else 0
        self.previous = [train_loss, val_loss]
        if self.streak >= self.patience and not self.fired:
            self.fired = True
            return (f"validation loss rose while training loss fell for {self.streak} validations "
                    f"in a row (val {val_loss:.4g}, train {train_loss:.4g})")
        if self.streak == 0:
            self.fired = False  # a new episode may fire again
        return None


@dataclass
class BestTracker:
    monitor: str
    mode: str
    best: Optional[float] = None
    step: Optional[int] = None

    def update(self, metrics: Dict[str, float], step: int) -> bool:
        """True when this validation is the best so far."""
        if self.monitor in metrics and improved(metrics[self.monitor], self.best, self.mode):
            self.best, self.step = metrics[self.monitor], step
            return True
        return False


@dataclass
class Monitors:
    early: Optional[EarlyStopping]
    overfitting: Optional[OverfittingDetector]
    best: BestTracker
    stop_on_overfitting: bool = False

    @classmethod
    def from_config(cls, cfg: C.Config) -> "Monitors":
        s = cfg.stopping
        early = (EarlyStopping(s.early.monitor, s.early.mode, s.early.patience, s.early.min_delta)
                 if s.early.monitor else None)
        overfitting = OverfittingDetector(s.overfitting.patience) if s.overfitting.enabled else None
        return cls(early, overfitting, BestTracker(cfg.checkpoint.monitor, cfg.checkpoint.mode),
                   stop_on_overfitting=s.overfitting.stop)

    # What a checkpoint keeps: progress counters only. Settings (monitor, mode, patience, ...) come
    # from the config of the run that resumes, so a resume may change them.
    PROGRESS = {"early": ("best", "bad_validations"), "overfitting": ("streak", "fired", "previous"),
                "best": ("best", "step")}

    def state_dict(self) -> Dict[str, Dict]:
        state = {"best": progress_of(self.best, self.PROGRESS["best"])}
        if self.early:
            state["early"] = progress_of(self.early, self.PROGRESS["early"])
        if self.overfitting:
            state["overfitting"] = progress_of(self.overfitting, self.PROGRESS["overfitting"])
        return state

    def load_state_dict(self, state: Dict[str, Dict]) -> None:
        for name, fields in self.PROGRESS.items():
            restore_progress(getattr(self, name), state.get(name), fields)


def progress_of(component, fields) -> Dict:
    """What a checkpoint keeps of a component: its progress counters, and the metric it watches."""
    progress = {key: getattr(component, key) for key in fields}
    if hasattr(component, "monitor"):
        progress = {"monitor": component.monitor, **progress}
    return progress


def restore_progress(component, saved: Optional[Dict], fields) -> None:
    if component is None or saved is None:
        return
    if getattr(component, "monitor", None) != saved.get("monitor", getattr(component, "monitor", None)):
        return  # now watching another metric: the old best means nothing for it
    for key in fields:
        if key in saved:
            setattr(component, key, saved[key])


def generalisation_gap(train: Dict[str, float], val: Dict[str, float]) -> Dict[str, float]:
    """Validation minus training loss; training minus validation accuracy (both grow with overfitting)."""
    gap = {}
    if "loss" in train and "val/loss" in val:
        gap["gap/loss"] = val["val/loss"] - train["loss"]
    if "accuracy" in train and "val/accuracy" in val:
        gap["gap/accuracy"] = train["accuracy"] - val["val/accuracy"]
    return gap
