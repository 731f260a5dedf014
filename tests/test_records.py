"""Typed records on the driver, without Ray: the RunSink stores checkpoints, the Recorder
dispatches each record kind to its place (TensorBoard, read back with its own reader; the summary log)."""

from __future__ import annotations

import pickle

import pytest

from orchestrator import config as C
from orchestrator.checkpoint.store import CheckpointStore
from orchestrator.driver.progress import ProgressView
from orchestrator.driver.recorder import Recorder
from orchestrator.records import (CheckpointRecord, EventRecord, FirstStepInfo, Heartbeat, MetricsRecord, PlanInfo,
                                  StartupInfo)
from orchestrator.worker.reporting import Reporter
from orchestrator.driver.run_sink import RunSink
from orchestrator.driver.tensorboard_sink import TensorBoardSink
from tests.helpers import read_scalars


def test_the_sink_stores_checkpoint_bytes_and_passes_the_record_on_without_them(tmp_path):
    sink = RunSink(str(tmp_path / "ckpt"), C.CheckpointConfig())
    sink.push([MetricsRecord(3, {"train/loss": 1.0}),
               CheckpointRecord(step=3, epoch=1, metrics={"val/loss": 0.5}, payload=b"weights")])
    metrics, checkpoint = sink.drain()
    assert metrics == MetricsRecord(3, {"train/loss": 1.0})
    assert checkpoint == CheckpointRecord(step=3, epoch=1, metrics={"val/loss": 0.5}, payload=None)
    store = CheckpointStore(tmp_path / "ckpt", C.CheckpointConfig(), check_payload=None)  # opaque bytes
    (manifest,) = store.manifests()
    assert (manifest.step, manifest.epoch, manifest.metrics) == (3, 1, {"val/loss": 0.5})
    assert store.read(manifest) == b"weights"
    assert sink.drain() == []


def test_the_reporter_builds_typed_records_and_they_survive_pickling():
    reporter = Reporter(rank=0, keeps_records=True)
    reporter.metrics(1, {"train/loss": 2.0})
    reporter.event(1, "overfitting", "val loss rising")
    reporter.checkpoint(1, b"x", {"epoch": 0, "metrics": {}})
    records = pickle.loads(pickle.dumps(reporter.drain()))  # as Ray sends them
    timing = records.pop(2)  # the checkpoint's own timing comes just before it
    assert timing.values.keys() == {"checkpoint/blocked_ms", "checkpoint/write_ms"}
    assert records == [MetricsRecord(1, {"train/loss": 2.0}), EventRecord(1, "overfitting", "val loss rising"),
                       CheckpointRecord(1, 0, {}, b"x")]
    heartbeat = pickle.loads(pickle.dumps(Heartbeat(rank=2, step=5, progress=7)))
    assert (heartbeat.rank, heartbeat.step, heartbeat.progress) == (2, 5, 7)


@pytest.fixture
def recorder(tmp_path):
    tb = TensorBoardSink(tmp_path / "tb")
    yield Recorder(tb, ProgressView("test", enabled=False))
    tb.close()


def test_each_kind_goes_to_its_place(recorder, tmp_path):
    recorder.handle([
        StartupInfo(attempt=0, seconds={"worker_build_s": 0.5}),
        PlanInfo(steps_per_epoch=10, total_steps=30, start_step=0, world_size=2, samples_per_step=64),
        FirstStepInfo(attempt=0, unix=1000.0, first_batch_s=0.1, first_step_s=0.2),
        MetricsRecord(1, {"train/loss": 2.0}),
        MetricsRecord(2, {"train/loss": 1.5}),
        EventRecord(2, "overfitting", "val loss rising"),
        CheckpointRecord(2, 0, {}),
    ])
    log = recorder.log
    assert log.timing == {"worker_build_s": 0.5, "first_batch_s": 0.1, "first_step_s": 0.2}
    assert log.info["world_size"] == 2 and log.first_step_unix_per_attempt == [1000.0]
    assert log.last == {"train/loss": 1.5} and log.last_step == {"train/loss": 2}
    assert [(e["step"], e["event"]) for e in log.events] == [(2, "overfitting")]
    assert recorder.view.total == 30
    recorder.tb.flush()
    scalars = read_scalars(tmp_path / "tb")
    assert scalars["train/loss"] == [(1, 2.0), (2, 1.5)]
    assert scalars["startup/worker_build_s"] == [(0, 0.5)]


def test_a_restarts_first_step_reports_recovery_not_start_up(recorder, tmp_path):
    recorder.log.restarts.append({"step": 7, "detected_unix": 990.0})
    recorder.handle([StartupInfo(attempt=1, seconds={"worker_build_s": 0.5}),
                     FirstStepInfo(attempt=1, unix=1000.0, first_batch_s=0.1, first_step_s=0.2)])
    assert recorder.log.restarts[-1]["recovery_s"] == pytest.approx(10.0)
    assert recorder.log.timing == {}  # a restart's start-up is its recovery time, not the run's start-up
    recorder.tb.flush()
    scalars = read_scalars(tmp_path / "tb")
    assert scalars["fault/recovery_s"] == [(7, pytest.approx(10.0))]
    assert not any(tag.startswith("startup/") for tag in scalars)
