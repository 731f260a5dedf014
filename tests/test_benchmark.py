"""The benchmark: its pure parts as tables, and the script end to end in its smallest configuration
(no timing is asserted: speed claims belong in the benchmark's own results)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, wait_until_gone

sys.path.insert(0, str(REPO / "scripts"))

from bench import common, peers, summary  # noqa: E402
from bench.workloads import RESULT_PREFIX, RunnerResult, ms_per_step  # noqa: E402


def row(runner, rep, samples_per_sec, startup_s, workers=2, status="ok"):
    return {"runner": runner, "workload": "mlp", "workers": workers, "rep": rep, "status": status, "note": "",
            "samples_per_sec": samples_per_sec, "startup_s": startup_s,
            "ms_per_step": ms_per_step(samples_per_sec, "mlp", workers)}


def test_summary_gives_median_spread_and_overhead_in_ms_against_torchrun():
    # 2 workers x batch 64 = 128 samples a step: 64,000 samples/s is 2.0 ms/step.
    rows = [row("torchrun", 1, 64_000, 3.0), row("torchrun", 2, 51_200, 2.0), row("torchrun", 3, 42_667, 4.0),
            row("orchestrator", 1, 51_200, 6.0), row("orchestrator", 2, 42_667, 5.0),
            row("orchestrator", 3, None, None, status="failed")]
    by_runner = {s["runner"]: s for s in summary.summarise(rows)}
    torchrun, orchestrator = by_runner["torchrun"], by_runner["orchestrator"]
    assert torchrun["ms_per_step"] == pytest.approx(2.5)
    assert (torchrun["ms_per_step_min"], torchrun["ms_per_step_max"]) == pytest.approx((2.0, 3.0), abs=1e-3)
    assert (torchrun["startup_s_min"], torchrun["startup_s"], torchrun["startup_s_max"]) == (2.0, 3.0, 4.0)
    assert torchrun["overhead_ms"] == 0.0 and torchrun["throughput_ratio"] == 1.0
    assert orchestrator["reps_ok"] == 2 and orchestrator["reps"] == 3  # the failed rep is left out
    assert orchestrator["ms_per_step"] == pytest.approx(2.75, abs=1e-3)
    assert orchestrator["overhead_ms"] == pytest.approx(0.25, abs=1e-3)
    # Its repetitions' spread against torchrun's median (51,200 samples/s, 2.5 ms/step).
    assert (orchestrator["throughput_ratio_min"], orchestrator["throughput_ratio_max"]) == pytest.approx((0.8333, 1.0), abs=1e-3)
    assert (orchestrator["overhead_ms_min"], orchestrator["overhead_ms_max"]) == pytest.approx((0.0, 0.5), abs=1e-3)
    assert orchestrator["startup_ratio"] == pytest.approx(5.5 / 3.0)


def test_summary_without_a_baseline_has_no_overhead_and_orders_rows_by_peer():
    out = summary.summarise([row("orchestrator", 1, 50_000, 6.0), row("single", 1, 90_000, 2.0, workers=1)])
    assert [(s["workers"], s["runner"]) for s in out] == [(1, "single"), (2, "orchestrator")]
    assert all(s["overhead_ms"] is None and s["throughput_ratio"] is None for s in out)


def test_orchestrator_row_is_the_issue_14_workload_with_other_settings_at_their_defaults():
    overrides = peers.orchestrator_overrides("mlp", workers=2, num_samples=4096, steps=5000)
    assert {"model=mlp", "model.hidden_sizes=[128,64]", "data.batch_size=64", "optimizer=sgd",
            "data.val_fraction=0.0", "checkpoint.every_epoch=false", "trainer.max_steps=5000"} <= set(overrides)
    assert not any(o.startswith(("trainer.log_every_n_steps", "scheduler", "health")) for o in overrides)


@pytest.mark.parametrize("runner, hook_args", [
    ("torchrun", []),
    ("torchrun-fp16", ["--comm-hook", "fp16"]),
    ("torchrun-powersgd", ["--comm-hook", "powersgd", "--powersgd-start-iter", "2"]),
])
def test_torchrun_rows_pass_the_same_hook_the_orchestrator_rows_set(runner, hook_args, tmp_path):
    settings = peers.RunSettings(steps=100, warmup=10, num_samples=1024, timeout=1, mem_interval=0,
                                 ray_tmp_root=tmp_path)
    cmd = peers.command(runner, "wide_mlp", 2, settings, tmp_path)
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and cmd[len(cmd) - len(hook_args):] == hook_args
    orchestrator_row = runner.replace("torchrun", "orchestrator")
    expected = {"torchrun": [], "torchrun-fp16": ["trainer.ddp.comm_hook=fp16"],
                "torchrun-powersgd": ["trainer.ddp.comm_hook=powersgd", "trainer.ddp.powersgd_start_iter=2"]}
    assert peers.ORCHESTRATOR_ROWS[orchestrator_row] == expected[runner]


def test_runner_batches_are_made_once_as_views_and_split_between_ranks():
    per_rank = [common.make_batches("mlp", 1024, rank, world=2) for rank in (0, 1)]
    assert [len(b) for b in per_rank] == [8, 8]  # 1024 samples / batch 64 = 16 batches, half each
    x0, y0 = per_rank[0][0]
    assert x0.shape == (64, 1, 28, 28) and y0.shape == (64,)
    bases = {x._base.data_ptr() for batches in per_rank for x, _ in batches}  # slices of one tensor, no copies
    assert len(bases) == 2  # one dataset per rank, as a plain script would hold
    offsets = {(x.data_ptr() - x._base.data_ptr()) // x[0].nbytes for x, _ in per_rank[1]}
    assert offsets == set(range(64, 1024, 128))  # rank 1 takes every other batch, from the second on


def test_runner_result_line_round_trips_and_measures_start_up_from_the_launch_clock():
    result = RunnerResult(first_step_unix=103.5, samples_per_sec=1.0, steps=10, warmup=2, world_size=2,
                          final_loss=0.1, launch_unix=100.0)
    parsed = peers.tagged_json("(RayTrainWorker pid=1) " + result.line(), RESULT_PREFIX)
    assert RunnerResult(**parsed) == result and result.startup_s == 3.5


@pytest.mark.ray
def test_benchmark_quick_writes_its_table_chart_and_raw_results(tmp_path, own_ray_env):
    proc = subprocess.run([sys.executable, "scripts/benchmark.py", "--quick", "--runners",
                           "single,torchrun,orchestrator", "--workers", "1", "--steps", "15", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env=own_ray_env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    table = (tmp_path / "results.md").read_text()
    assert all(f"| mlp | 1 | {runner} |" in table for runner in ("single", "torchrun", "orchestrator"))
    assert (tmp_path / "results.png").stat().st_size > 0
    raw = json.loads((tmp_path / "raw.json").read_text())
    runs = raw["runs"]
    assert {r["runner"] for r in runs} == {"single", "torchrun", "orchestrator"}
    assert all(r["status"] == "ok" and r["samples_per_sec"] > 0 and r["startup_s"] > 0 for r in runs)
    # The runners measured their first step against the clock the driver passed in.
    assert all(r["result"]["launch_unix"] == r["start_unix"] for r in runs if r["runner"] != "orchestrator")
    overhead = {s["runner"]: s["overhead_ms"] for s in raw["summary"]}
    assert overhead["torchrun"] == 0.0 and isinstance(overhead["orchestrator"], float)
    assert wait_until_gone(Path(own_ray_env["RAY_TMPDIR"])) == []


# ----------------------------------------------------------------------------- scripts/startup_cpu.py
def test_startup_cpu_names_each_process_by_its_role():
    import startup_cpu

    assert startup_cpu.role("/venv/bin/python -m orchestrator.train model=mlp python").startswith("driver")
    assert startup_cpu.role("ray::Worker ray::Worker") == "training worker"
    assert startup_cpu.role("ray::RunSink ray::RunSink").startswith("run sink")
    assert startup_cpu.role("/ray/core/src/ray/gcs/gcs_server --log_dir=x gcs_server") == "Ray GCS"
    assert startup_cpu.role("python -u /ray/dashboard/agent.py --node-id=x python") == "Ray dashboard agent"
    assert startup_cpu.role("python /ray/dashboard/dashboard.py --host=x python").startswith("Ray dashboard head")


def test_startup_cpu_samples_the_cpu_time_of_a_command_and_its_children():
    import startup_cpu

    busy = "import subprocess, sys; sum(range(3 * 10**7)); subprocess.run([sys.executable, '-c', 'sum(range(3 * 10**7))'])"
    proc = subprocess.Popen([sys.executable, "-c", busy])
    samples = startup_cpu.sample_tree(proc)
    assert proc.returncode == 0
    assert len(samples) == 2  # the command and its child, each seen while it ran
    assert all(series[-1][1] > 0.1 for series in samples.values())  # CPU seconds, growing
    assert all(series[0][0] <= series[-1][0] for series in samples.values())
