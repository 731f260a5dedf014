"""The peers the benchmark compares: how each one is launched and how its result is read.

  single        one process, one thread, no DDP: the per-core compute floor (bench/single_runner.py)
  torchrun      a plain DDP script under `torchrun --standalone` (gloo): the baseline (bench/torchrun_runner.py)
  raytrain      Ray Train v2 TorchTrainer on a fresh local Ray started inside the command (bench/raytrain_runner.py)
  orchestrator  this project's `python -m orchestrator.train`, every setting at its default but the workload's
  orchestrator-log1  the same, reducing and reporting metrics every step (what logging every step costs)
  orchestrator-fp16, orchestrator-powersgd  opt-in: the same with trainer.ddp.comm_hook=fp16 / powersgd
  torchrun-fp16, torchrun-powersgd          opt-in: torchrun registering the same hook (--comm-hook)
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from bench.measure import SCRIPTS, Measured
from bench.workloads import RESULT_PREFIX, SKIP_PREFIX, WORKLOADS, RunnerResult, num_features, steps_for

# Opt-in rows (name them in --runners): torch's DDP communication hooks through trainer.ddp.comm_hook.
# PowerSGD compresses from step 2 so that the steady part after the warm-up is all compressed.
HOOK_ROWS = {"orchestrator-fp16": ["trainer.ddp.comm_hook=fp16"],
             "orchestrator-powersgd": ["trainer.ddp.comm_hook=powersgd", "trainer.ddp.powersgd_start_iter=2"]}
# The same hooks under torchrun (bench/torchrun_runner.py --comm-hook), from step 2 too.
TORCHRUN_ROWS = {"torchrun": [], "torchrun-fp16": ["--comm-hook", "fp16"],
                 "torchrun-powersgd": ["--comm-hook", "powersgd", "--powersgd-start-iter", "2"]}
DEFAULT_PEERS = ["single", "torchrun", "raytrain", "orchestrator", "orchestrator-log1"]
PEERS = DEFAULT_PEERS + list(HOOK_ROWS) + [r for r in TORCHRUN_ROWS if r not in DEFAULT_PEERS]
BASELINE = "torchrun"
# Extra overrides per orchestrator row; the plain row keeps trainer.log_every_n_steps at its default.
ORCHESTRATOR_ROWS = {"orchestrator": [], "orchestrator-log1": ["trainer.log_every_n_steps=1"], **HOOK_ROWS}
OK, SKIPPED, FAILED = "ok", "skipped", "failed"


@dataclass
class RunSettings:
    """What every run of one benchmark shares (the memory check uses its own copy)."""

    steps: int
    warmup: int
    num_samples: int
    timeout: float
    mem_interval: float
    ray_tmp_root: Path


@dataclass
class Outcome:
    """One run's result as the driver sees it."""

    status: str  # OK, SKIPPED or FAILED
    note: str = ""
    startup_s: Optional[float] = None  # from the driver's launch clock to rank 0's first optimizer step
    samples_per_sec: Optional[float] = None
    data_wait_pct: Optional[float] = None  # orchestrator only: the slowest rank's data wait, % of its step
    own_clock_startup_s: Optional[float] = None  # orchestrator only: the same, from its own clock
    result: Optional[dict] = None


def command(runner: str, workload: str, workers: int, settings: RunSettings, run_dir: Path) -> list:
    """The command line for one run. Every peer gets the same workload, steps and data size."""
    py = sys.executable
    steps, warmup = steps_for(workload, settings.steps, settings.warmup)
    common = ["--workload", workload, "--steps", str(steps), "--warmup", str(warmup),
              "--num-samples", str(settings.num_samples)]
    if runner == "single":
        return [py, str(SCRIPTS / "bench" / "single_runner.py"), *common]
    if runner in TORCHRUN_ROWS:
        # `python -m torch.distributed.run` is the torchrun entry point, from the same venv.
        return [py, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={workers}",
                str(SCRIPTS / "bench" / "torchrun_runner.py"), *common, *TORCHRUN_ROWS[runner]]
    if runner == "raytrain":
        return [py, str(SCRIPTS / "bench" / "raytrain_runner.py"), *common, "--workers", str(workers),
                "--storage-path", str(run_dir)]
    if runner in ORCHESTRATOR_ROWS:
        overrides = orchestrator_overrides(workload, workers, settings.num_samples, steps)
        return [py, "-m", "orchestrator.train", *overrides, *ORCHESTRATOR_ROWS[runner], f"hydra.run.dir={run_dir}"]
    raise ValueError(runner)


def orchestrator_overrides(workload: str, workers: int, num_samples: int, steps: int) -> list:
    """The workload, SGD (momentum 0.9, its default), validation and epoch checkpoints off; the rest default."""
    spec = WORKLOADS[workload]
    steps_per_epoch = max(1, num_samples // (spec["batch"] * workers))
    max_epochs = -(-steps // steps_per_epoch) + 1  # enough that trainer.max_steps, not epochs, ends the run
    overrides = [
        f"model={spec['model']}",
        "data=synthetic_classification",
        f"data.num_features={num_features(workload)}",
        "data.sample_shape=[" + ",".join(map(str, spec["shape"])) + "]",
        "data.num_classes=10",
        f"data.num_samples={num_samples}",
        f"data.batch_size={spec['batch']}",
        "data.val_fraction=0.0",
        f"scaling.num_workers={workers}",
        f"trainer.max_steps={steps}",
        f"trainer.max_epochs={max_epochs}",
        "checkpoint.every_epoch=false",
        "optimizer=sgd",
    ]
    if "hidden_sizes" in spec["kwargs"]:
        overrides.append("model.hidden_sizes=[" + ",".join(map(str, spec["kwargs"]["hidden_sizes"])) + "]")
    return overrides


def read_outcome(runner: str, m: Measured, run_dir: Path, summary_copy: Path) -> Outcome:
    if m.timed_out:
        return Outcome(FAILED, f"timed out after {m.wall_s:.0f} s")
    if runner in ORCHESTRATOR_ROWS:
        return orchestrator_outcome(m, run_dir, summary_copy)
    skip = tagged_json(m.output, SKIP_PREFIX)
    if skip:
        return Outcome(SKIPPED, skip["reason"])
    found = tagged_json(m.output, RESULT_PREFIX)
    if m.returncode != 0 or found is None:
        return Outcome(FAILED, f"exit {m.returncode}: {last_lines(m.output)}")
    result = RunnerResult(**found)
    if result.launch_unix != m.launch_unix:  # the runner must measure against the clock it was given
        return Outcome(FAILED, f"runner saw launch clock {result.launch_unix}, driver {m.launch_unix}")
    return Outcome(OK, startup_s=result.startup_s, samples_per_sec=result.samples_per_sec, result=found)


def orchestrator_outcome(m: Measured, run_dir: Path, summary_copy: Path) -> Outcome:
    """From the run's summary.json; its first step is measured against the driver's launch clock too."""
    summary = run_dir / "summary.json"
    if m.returncode != 0 or not summary.exists():
        return Outcome(FAILED, f"exit {m.returncode}: {last_lines(m.output)}")
    shutil.copy(summary, summary_copy)
    try:
        content = json.loads(summary.read_text())
        timing = content["timing"]
        first_step_unix = float(timing["first_step_unix"])
        losses = dict(final_loss=content.get("metrics", {}).get("train/loss"), loss_curve=loss_curve(run_dir / "tb"))
        return Outcome(OK, startup_s=first_step_unix - m.launch_unix,
                       samples_per_sec=float(timing["steady_samples_per_sec"]),
                       data_wait_pct=timing.get("data_pct"),
                       own_clock_startup_s=timing.get("command_to_first_step_s"), result={**timing, **losses})
    except (ValueError, KeyError, TypeError) as exc:
        return Outcome(FAILED, f"summary.json has no usable timing: {exc!r}")


def loss_curve(tb_dir: Path) -> Optional[list]:
    """[[step, train/loss], ...] from the run's event files (TensorBoard's own reader), before the run dir goes."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return None
    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    if "train/loss" not in acc.Tags()["scalars"]:
        return None
    return [[e.step, e.value] for e in acc.Scalars("train/loss")]


def tagged_json(output: str, prefix: str):
    """The last line's JSON after `prefix` (Ray prefixes worker lines, so search within lines)."""
    found = None
    for line in output.splitlines():
        if prefix in line:
            found = json.loads(line.split(prefix, 1)[1])
    return found


def last_lines(text: str, n: int = 3) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:])[-300:]
