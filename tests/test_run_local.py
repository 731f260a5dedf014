"""End to end on a local Ray: 2 CPU workers train data-parallel; metrics stream live to TensorBoard."""

from __future__ import annotations

import json
import math
import threading
import time

import pytest

import orchestrator
from orchestrator.data import builtin as data
from orchestrator.driver.worker_group import PlacementTimeout
from tests.helpers import read_scalars

pytestmark = pytest.mark.ray

REQUIRED_TAGS = {"train/loss", "train/lr", "train/grad_norm", "train/samples_per_sec", "val/loss", "val/accuracy",
                 "time/epoch_s", "worker/0/step_ms", "worker/1/step_ms", "worker/0/data_ms"}


@pytest.fixture(scope="module")
def default_job(ray_session, tmp_path_factory):
    """The default job (CNN on the digits, 2 workers), watched from outside while it runs."""
    run_dir = tmp_path_factory.mktemp("default_job")
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(
        result=orchestrator.run(["trainer.max_epochs=12"], run_dir=run_dir, show_progress=False)))
    thread.start()
    seen_while_running = []
    while thread.is_alive():
        time.sleep(0.5)
        tb = run_dir / "tb"
        if tb.exists() and not seen_while_running:
            points = read_scalars(tb).get("train/loss", [])
            if points and thread.is_alive():
                seen_while_running = points
    thread.join()
    return outcome["result"], seen_while_running


def test_curves_appear_while_the_job_runs(default_job):
    _, seen_while_running = default_job
    assert seen_while_running, "no train/loss point was readable before the run ended"


def test_event_file_holds_the_metrics_at_increasing_steps(default_job):
    result, _ = default_job
    scalars = read_scalars(result.run_dir / "tb")
    assert REQUIRED_TAGS <= scalars.keys()
    for tag in REQUIRED_TAGS:
        steps = [step for step, _ in scalars[tag]]
        assert steps == sorted(set(steps)), f"{tag} steps are not strictly increasing: {steps}"


def test_digits_validation_accuracy_reaches_090(default_job):
    result, _ = default_job
    assert result.status == "completed"
    assert result.metrics["val/accuracy"] >= 0.9


def test_summary_json_agrees_with_the_event_file(default_job):
    result, _ = default_job
    summary = json.loads((result.run_dir / "summary.json").read_text())
    scalars = read_scalars(result.run_dir / "tb")
    for tag in ("val/accuracy", "val/loss", "train/loss"):
        last_step, last_value = scalars[tag][-1]
        assert summary["metrics"][tag] == pytest.approx(last_value, rel=1e-6)
    assert summary["steps"] == scalars["train/loss"][-1][0]
    assert summary["stop_reason"] == "max_epochs"
    assert summary["epochs"] == 12


def test_run_dir_holds_config_checkpoints_and_hparams(default_job):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result, _ = default_job
    assert "model:" in (result.run_dir / "config.yaml").read_text()
    assert list((result.run_dir / "checkpoints").glob("step-*.pt"))
    acc = EventAccumulator(str(result.run_dir / "tb"))
    acc.Reload()
    tensor_tags = set(acc.Tags()["tensors"])
    assert "config/text_summary" in tensor_tags
    plugins = acc.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(plugins)


def test_workers_have_distinct_ranks_and_processes(default_job):
    result, _ = default_job
    workers = result.summary["workers"]
    assert [w["rank"] for w in workers] == [0, 1]
    assert len({w["pid"] for w in workers}) == 2


def test_a_gang_the_cluster_cannot_hold_fails_within_the_bound(ray_session, tmp_path):
    bound = 3.0
    start = time.monotonic()
    with pytest.raises(PlacementTimeout) as err:
        orchestrator.run(["scaling.num_workers=3", "scaling.cpus_per_worker=2",
                          f"scaling.placement_timeout_s={bound}"], run_dir=tmp_path, show_progress=False)
    elapsed = time.monotonic() - start
    assert elapsed < bound + 15
    message = str(err.value)
    assert "3 workers" in message and "'CPU': 2.0" in message  # what was asked
    assert "CPU 4" in message                                  # what the cluster has
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and "PlacementTimeout" in summary["error"]


def test_run_from_a_config_object_returns_metrics_and_run_dir(ray_session, tmp_path):
    cfg = orchestrator.compose(["model=mlp", "data=synthetic_regression", "trainer.max_epochs=2"])
    result = orchestrator.run(config=cfg, run_dir=tmp_path, show_progress=False)
    assert result.run_dir == tmp_path
    assert result.metrics["val/loss"] > 0 and "val/accuracy" not in result.metrics  # regression: MSE only
    assert (tmp_path / "summary.json").exists()


def test_character_gpt_learns_from_the_default_text_corpus(ray_session, tmp_path):
    overrides = ["model=gpt", "data=text", "data.max_chars=200000", "trainer.max_steps=40",
                 "trainer.val_every_n_steps=20", "trainer.log_every_n_steps=5"]
    vocabulary = data.load(orchestrator.compose(overrides)).info.num_classes
    result = orchestrator.run(overrides, run_dir=tmp_path, show_progress=False)
    losses = [value for _, value in read_scalars(tmp_path / "tb")["train/loss"]]
    assert losses[0] == pytest.approx(math.log(vocabulary), rel=0.15)  # starts near uniform over characters
    assert losses[-1] < losses[0] - 1.0
    assert 0 < result.metrics["val/accuracy"] < 1
