"""The world-size sweep's pure parts (scripts/bench/world_sweep_*): command line, row, growth, table;
and the driver's inbound-record counter it reads. Nothing is timed here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from bench.world_sweep_plan import Observed, growth, overrides, row, value_at  # noqa: E402
from bench.world_sweep_report import markdown  # noqa: E402
from orchestrator.driver.recorder import InboundTraffic  # noqa: E402
from orchestrator.records import EventRecord, MetricsRecord  # noqa: E402


def test_overrides_offer_enough_logical_cpus_and_name_the_run_dir():
    args = overrides(48, "/tmp/x")
    assert "scaling.num_workers=48" in args
    assert "cluster.num_cpus=48" in args          # never fewer logical CPUs than ranks
    assert "cluster.num_cpus=32" in overrides(4, "/tmp/x")
    assert "hydra.run.dir=/tmp/x" in args


@pytest.mark.parametrize("values, meaning", [
    ([5.0, 5.1, 4.9, 5.0], "flat"),
    ([1.0, 2.0, 4.0, 8.0], "linear"),
    ([3.0, 5.0, 9.0, 17.0], "linear"),              # 1 + 2n: a constant part does not hide it
    ([1.0, 4.0, 16.0, 64.0], "quadratic"),
    ([1.0, 2.0, 3.0, 4.0], "logarithmic"),          # log2(n) + 1
    ([0.10, 0.05, 0.06, 0.09], "flat"),             # noisy but no trend
    ([8.0, 4.0, 2.0, 1.0], "falls"),
    ([1.0, None, 4.0], "too few points"),
])
def test_growth_labels(values, meaning):
    sizes = [1, 2, 4, 8][:len(values)]
    assert growth(sizes, values)[1] == meaning


def test_value_at_takes_the_last_sample_before():
    samples = [(10.0, 1.0, 0), (11.0, 2.0, 0), (12.0, 3.5, 0)]
    assert value_at(samples, 11.5) == 2.0
    assert value_at(samples, 9.0) is None
    assert value_at(samples, None) is None


def summary(**extra):
    s = {"status": "interrupted", "steps": 90, "wall_time_s": 40.0,
         "timing": {"first_step_unix": 110.0, "command_to_first_step_s": 9.5, "actor_start_s": 3.0,
                    "steady_samples_per_sec": 320.0},
         "driver_inbound": {"bytes": 10000, "records": 100, "first_unix": 110.0, "last_unix": 140.0},
         "restarts": [{"step": 200, "detected_unix": 130.5, "recovery_s": 4.5, "steps_lost": 10}]}
    s.update(extra)
    return s


def test_row_from_a_recovered_run():
    obs = Observed(2, launch_unix=100.0, exit_code=130, timed_out=False, kill_unix=130.0, end_unix=150.0,
                   ray_head_cpu_s=10.0,
                   driver_samples=[(105.0, 1.0, 100 * 2**20), (110.0, 2.0, 200 * 2**20), (130.0, 3.0, 210 * 2**20)])
    r = row(obs, summary(), heartbeat_bytes=150)
    assert r["launch_to_first_step_s"] == 10.0
    assert r["actor_start_s"] == 3.0
    assert r["driver_cpu_startup_s"] == 2.0
    assert r["driver_cpu_train_pct"] == pytest.approx(5.0)        # 1 CPU s over 20 s
    assert r["driver_peak_rss_mb"] == 210
    assert r["kill_to_detected_s"] == pytest.approx(0.5)
    assert r["kill_to_first_step_s"] == pytest.approx(5.0)
    assert r["inbound_bytes_per_s"] == pytest.approx(10000 / 25.5)  # the recovery gap left out
    assert r["heartbeat_bytes_per_s"] == 300
    assert r["steps_per_s"] == 10.0                               # 200 steps from first step to kill
    assert r["ray_head_cpu_pct"] == 20.0                          # 10 CPU s over a 50 s run


def test_row_from_a_timeout_keeps_what_is_known():
    obs = Observed(32, launch_unix=100.0, exit_code=-9, timed_out=True, note="no checkpoint (timeout)")
    r = row(obs, None, heartbeat_bytes=150)
    assert r["status"] == "timeout"
    assert r["launch_to_first_step_s"] is None and r["kill_to_first_step_s"] is None
    text = markdown([r], "# t")
    assert "| status | timeout |" in text and "32 ranks" in text


def test_inbound_traffic_counts_bytes_and_records():
    traffic = InboundTraffic()
    traffic.add([MetricsRecord(5, {"train/loss": 1.0})])
    first = traffic.bytes
    traffic.add([MetricsRecord(10, {"train/loss": 0.5, **{f"worker/{r}/step_ms": 1.0 for r in range(8)}}),
                 EventRecord(10, "stopped", "max_steps")])
    assert traffic.records == 3
    assert traffic.bytes > 2 * first      # more tags, more bytes
    assert traffic.first_unix <= traffic.last_unix


@pytest.mark.parametrize("name, pool", [
    ("ray::Worker", True), ("ray::Worker.run", True), ("ray::IDLE", True),
    ("/venv/bin/python -u /venv/lib/ray/_private/workers/default_worker.py --node-ip-address=x", True),
    ("/venv/bin/python /venv/lib/ray/_private/workers/setup_worker.py /venv/lib/default_worker.py", True),
    ("ray::RunSink.push", False), ("ray::DashboardAgent", False),
    ("/venv/ray/core/src/ray/raylet/raylet --python_worker_command=python default_worker.py", False),
    ("/venv/ray/core/src/ray/gcs/gcs_server --log_dir=/tmp/x", False),
])
def test_pool_workers_are_told_from_rays_head(name, pool):
    from bench.world_sweep_probe import is_pool_worker

    assert is_pool_worker(name) is pool


@pytest.mark.parametrize("name, short", [
    ("/venv/ray/core/src/ray/raylet/raylet --python_worker_command=/venv/bin/python setup_worker.py x", "raylet"),
    ("/venv/bin/python -u /venv/lib/ray/_private/log_monitor.py --x", "log_monitor.py"),
    ("ray::DashboardAgent", "ray::DashboardAgent"),
])
def test_short_names(name, short):
    from bench.world_sweep_probe import short_name

    assert short_name(name) == short
