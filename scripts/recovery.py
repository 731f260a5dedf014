#!/usr/bin/env python
"""How long a failure costs: SIGKILL a worker at a random step, N times, and report the recovery time
(failure detected -> first step after the restart) and the steps lost (work since the last checkpoint).

    python scripts/recovery.py --runs 5 --checkpoint-every 25

Each run is a fresh `orchestrator.run` on a shared local Ray (2 workers, the MLP on the digits);
the numbers come from the run's own summary.json (`restarts`). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def worker_processes(started_after: float):
    return [p for p in psutil.process_iter(["pid", "cmdline", "create_time"])
            if (p.info["cmdline"] or [""])[0].startswith("ray::Worker") and p.info["create_time"] >= started_after]


def one_run(run_dir: Path, checkpoint_every: int, steps: int, rng: random.Random) -> dict:
    import orchestrator

    # The driver sees metrics about a second after the workers log them, so the kill lands a few hundred
    # steps later: aim early enough that it lands before the run ends.
    kill_at = rng.randint(checkpoint_every, steps // 3)
    killed = {}
    started = time.time() - 1.0

    def kill(step, values):
        if not killed and step >= kill_at:
            victim = rng.choice(worker_processes(started))
            os.kill(victim.pid, signal.SIGKILL)
            killed.update(step=step, pid=victim.pid, cmdline=victim.info["cmdline"][0].strip())

    result = orchestrator.run(["model=mlp", f"trainer.max_steps={steps}", "trainer.max_epochs=1000",
                               "trainer.log_every_n_steps=5", f"checkpoint.every_n_steps={checkpoint_every}",
                               "checkpoint.every_epoch=false"],
                              run_dir=run_dir, show_progress=False, on_metrics=kill)
    if len(result.summary["restarts"]) != 1:
        raise RuntimeError(f"expected one restart after killing pid {killed.get('pid')} "
                           f"({killed.get('cmdline')}), got {result.summary['restarts']}; "
                           f"stop reason {result.summary.get('stop_reason')}")
    (restart,) = result.summary["restarts"]
    return {"kill_sent_at": killed["step"], "died_at": restart["step"],
            "resumed_from": restart["resume_step"], "rank": restart["rank"],
            "steps_lost": restart["steps_lost"], "recovery_s": restart["recovery_s"],
            "steps": result.summary["steps"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--checkpoint-every", type=int, default=25)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback, as the command line does
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray's session files in a temp dir of our own (short: socket paths are limited), removed at the end.
    ray_tmp = tempfile.mkdtemp(prefix="rr")
    os.environ["RAY_TMPDIR"] = ray_tmp
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False)
    rng = random.Random(args.seed)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="recovery_") as tmp:
            for i in range(args.runs):
                row = one_run(Path(tmp) / f"run{i}", args.checkpoint_every, args.steps, rng)
                rows.append(row)
                print(f"run {i + 1}: kill sent when the driver saw step {row['kill_sent_at']}, "
                      f"rank {row['rank']} died at step {row['died_at']}, resumed from {row['resumed_from']} "
                      f"({row['steps_lost']} steps lost), first step {row['recovery_s']:.2f} s after the "
                      f"failure; finished {row['steps']} steps", flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    recovery = [r["recovery_s"] for r in rows]
    lost = [r["steps_lost"] for r in rows]
    print(f"\nrecovery (failure to first step after restart): median {statistics.median(recovery):.2f} s, "
          f"max {max(recovery):.2f} s; steps lost: median {statistics.median(lost)}, max {max(lost)} "
          f"(checkpoints every {args.checkpoint_every} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
