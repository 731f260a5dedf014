"""Decisions at validation time: early stopping, the overfitting signal, the best model (pure)."""

from __future__ import annotations

import pytest

from orchestrator import config as C
from orchestrator.policy.monitors import BestTracker, EarlyStopping, Monitors, OverfittingDetector, generalisation_gap


def first_stop(early: EarlyStopping, values, key="val/loss"):
    """1-based index of the validation at which early stopping fires, or None."""
    for i, value in enumerate(values, 1):
        if early.update({key: value}):
            return i
    return None


def test_early_stopping_fires_after_patience_validations_without_improvement():
    losses = [1.0, 0.8, 0.7, 0.71, 0.72, 0.69, 0.70, 0.70, 0.71]
    # improvements at 1, 2, 3 and 6; then 7, 8, 9 do not improve: stop at the 9th validation
    assert first_stop(EarlyStopping("val/loss", "min", patience=3), losses) == 9


def test_min_delta_ignores_tiny_improvements():
    losses = [1.0, 0.99, 0.985, 0.98, 0.975]
    assert first_stop(EarlyStopping("val/loss", "min", patience=2, min_delta=0.05), losses) == 3


def test_mode_max_for_accuracy():
    accuracies = [0.5, 0.7, 0.69, 0.68]
    assert first_stop(EarlyStopping("val/accuracy", "max", patience=2), accuracies, "val/accuracy") == 4


def test_early_stopping_ignores_validations_without_its_metric():
    early = EarlyStopping("val/accuracy", "max", patience=1)
    assert early.update({"val/loss": 1.0}) is None and early.bad_validations == 0


def test_overfitting_fires_once_when_val_loss_rises_while_train_loss_falls():
    detector = OverfittingDetector(patience=2)
    history = [(2.0, 1.5), (1.8, 1.6), (1.6, 1.7), (1.4, 1.8), (1.2, 1.9)]  # (train, val)
    signals = [detector.update(train, val) for train, val in history]
    assert [s is not None for s in signals] == [False, False, True, False, False]
    assert "2 validations in a row" in signals[2]


def test_overfitting_needs_both_trends():
    detector = OverfittingDetector(patience=1)
    assert detector.update(2.0, 1.0) is None
    assert detector.update(2.1, 1.1) is None  # both rising: not overfitting (maybe divergence)
    assert detector.update(1.9, 1.0) is None  # both falling: learning


def test_overfitting_can_fire_again_after_recovering():
    detector = OverfittingDetector(patience=1)
    fired = [detector.update(t, v) is not None for t, v in [(2, 1), (1.9, 1.1), (1.8, 1.0), (1.7, 1.2)]]
    assert fired == [False, True, False, True]


def test_best_tracker_keeps_the_best_step():
    best = BestTracker("val/accuracy", "max")
    steps = [best.update({"val/accuracy": a}, step) for step, a in [(10, 0.5), (20, 0.8), (30, 0.7)]]
    assert steps == [True, True, False] and best.step == 20 and best.best == 0.8


def test_monitor_state_survives_a_checkpoint():
    cfg = C.Config(model=C.MLPConfig(), data=C.DigitsConfig(), optimizer=C.AdamConfig(),
                   scheduler=C.ConstantSchedulerConfig(),
                   stopping=C.StoppingConfig(early=C.EarlyStoppingConfig(monitor="val/loss", patience=3)))
    monitors = Monitors.from_config(cfg)
    for loss in (1.0, 1.1, 1.2):
        monitors.early.update({"val/loss": loss})
    restored = Monitors.from_config(cfg)
    restored.load_state_dict(monitors.state_dict())
    assert restored.early.bad_validations == 2
    assert restored.early.update({"val/loss": 1.3}) is not None  # the third bad validation stops


def test_generalisation_gap():
    gap = generalisation_gap({"loss": 0.2, "accuracy": 0.99}, {"val/loss": 0.5, "val/accuracy": 0.9})
    assert gap["gap/loss"] == pytest.approx(0.3) and gap["gap/accuracy"] == pytest.approx(0.09)


def test_a_resume_keeps_progress_but_takes_settings_from_its_own_config():
    def config(patience, monitor="val/loss"):
        return C.Config(model=C.MLPConfig(), data=C.DigitsConfig(), optimizer=C.AdamConfig(),
                        scheduler=C.ConstantSchedulerConfig(),
                        stopping=C.StoppingConfig(early=C.EarlyStoppingConfig(monitor=monitor, patience=patience)))
    old = Monitors.from_config(config(patience=3))
    for loss in (1.0, 1.1):
        old.early.update({"val/loss": loss})
    resumed = Monitors.from_config(config(patience=20))
    resumed.load_state_dict(old.state_dict())
    assert resumed.early.patience == 20 and resumed.early.bad_validations == 1 and resumed.early.best == 1.0
    other = Monitors.from_config(config(patience=3, monitor="val/accuracy"))
    other.load_state_dict(old.state_dict())
    assert other.early.best is None  # a best of another metric does not carry over
