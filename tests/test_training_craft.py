"""Training craft end to end on a local Ray: stopping, overfitting, gradient health, NaN handling,
the best model on the test split."""

from __future__ import annotations

import io

import pytest
import torch

import orchestrator
from orchestrator.driver.launcher import RunFailed
from tests.helpers import read_scalars

pytestmark = pytest.mark.ray


def events(result, kind):
    return [e for e in result.summary["events"] if e["event"] == kind]


def test_random_labels_show_overfitting_and_trigger_early_stopping(ray_session, tmp_path):
    result = orchestrator.run(["+experiment=random_labels"], run_dir=tmp_path, show_progress=False)
    overfitting, early = events(result, "overfitting"), events(result, "early_stopping")
    assert overfitting, "memorising random labels must raise the overfitting signal"
    assert early and result.summary["stop_reason"].startswith("early stopping")
    assert overfitting[0]["step"] <= early[0]["step"]
    scalars = read_scalars(tmp_path / "tb")
    assert any(value == 1.0 for _, value in scalars["signals/overfitting"]), "a marker in TensorBoard"
    assert "gap/loss" in scalars and scalars["gap/loss"][-1][1] > 0  # validation worse than training
    assert result.summary["epochs"] < 60, "stopped before max_epochs"
    # The best model (lowest validation loss) was evaluated on the held-out test split.
    assert "test/accuracy" in result.metrics and result.metrics["test/best_step"] < result.summary["steps"]


def checkpoints_are_finite(run_dir):
    for path in sorted((run_dir / "checkpoints").glob("step-*.pt")):
        payload = torch.load(io.BytesIO(path.read_bytes()), weights_only=True)
        assert all(torch.isfinite(t).all() for t in payload["model"].values() if t.is_floating_point()), path.name


NAN_RUN = ["model=mlp", "trainer.max_steps=40", "trainer.max_epochs=10", "checkpoint.every_n_steps=5",
           "checkpoint.every_epoch=false", "checkpoint.keep_last=20", "chaos.kind=nan", "chaos.rank=1",
           "chaos.at_step=12"]


def test_a_nan_loss_stops_the_run_naming_step_and_layer_with_clean_checkpoints(ray_session, tmp_path):
    with pytest.raises(RunFailed, match="non-finite loss at step 12") as err:
        orchestrator.run(NAN_RUN + ["health.nan_policy=stop"], run_dir=tmp_path, show_progress=False)
    result = err.value  # the summary travels with the error
    assert result.summary["status"] == "failed" and result.summary["stop_reason"] == "non-finite loss at step 12"
    assert result.summary["restarts"] == [], "a deterministic NaN is not a fault to restart from"
    (event,) = events(result, "non_finite")
    assert "step 12" in event["message"] and "first net.1.weight" in event["message"]
    assert result.summary["checkpoints"]["latest_step"] == 12  # the final checkpoint, without the bad update
    checkpoints_are_finite(tmp_path)


def test_a_nan_loss_is_skipped_with_the_skip_policy(ray_session, tmp_path):
    result = orchestrator.run(NAN_RUN + ["health.nan_policy=skip"], run_dir=tmp_path, show_progress=False)
    assert result.status == "completed" and result.summary["steps"] == 40
    (event,) = events(result, "non_finite")
    assert "step 12" in event["message"] and "skipped" in event["message"]
    assert read_scalars(tmp_path / "tb")["health/skipped_steps"] == [(12, 1.0)]
    checkpoints_are_finite(tmp_path)
    assert torch.isfinite(torch.tensor(result.metrics["val/loss"]))


def test_layer_statistics_histograms_and_gradient_warnings(ray_session, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = orchestrator.run(["model=mlp", "trainer.max_steps=20", "health.layer_stats_every_n_steps=5",
                               "health.histogram_every_n_steps=10", "health.vanishing_below=1e3",
                               "health.exploding_above=1e6"], run_dir=tmp_path, show_progress=False)
    scalars = read_scalars(tmp_path / "tb")
    for prefix in ("grad_norm", "weight_norm", "update_ratio"):
        assert [step for step, _ in scalars[f"{prefix}/net/1/weight"]] == [5, 10, 15, 20]
    assert all(0 < value < 1 for _, value in scalars["update_ratio/net/1/weight"])
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"histograms": 0})
    acc.Reload()
    assert {"weights/net/1/weight", "gradients/net/1/weight"} <= set(acc.Tags()["histograms"])
    assert [e.step for e in acc.Histograms("weights/net/1/weight")] == [10, 20]
    warnings = events(result, "gradient_health")
    assert warnings and "vanishing gradient in net." in warnings[0]["message"]


def test_clipping_bounds_the_logged_update(ray_session, tmp_path):
    result = orchestrator.run(["model=mlp", "trainer.max_steps=10", "trainer.log_every_n_steps=1",
                               "optimizer=sgd", "optimizer.lr=0.1", "optimizer.momentum=0",
                               "optimizer.clip_grad_norm=0.01", "health.layer_stats_every_n_steps=1"],
                              run_dir=tmp_path, show_progress=False)
    scalars = read_scalars(tmp_path / "tb")
    # grad_norm is logged before clipping; the applied update is lr x clipped gradient: at most 0.1 x 0.01.
    assert max(v for _, v in scalars["train/grad_norm"]) > 0.01
    # ||update|| of the first layer = update_ratio x weight_norm (both logged per layer).
    updates = [ratio * weight for (_, ratio), (_, weight) in zip(scalars["update_ratio/net/1/weight"],
                                                                  scalars["weight_norm/net/1/weight"])]
    assert len(updates) == 10 and max(updates) <= 0.1 * 0.01 * 1.001
    assert result.status == "completed"

