#!/usr/bin/env python
"""Where the CPU goes between the shell and the first optimizer step: every process of a run, by role.

Runs the benchmark's 2-worker MLP (`python -m orchestrator.train`, one step) and samples, every 20 ms,
the CPU seconds (user + system, /proc/<pid>/stat) of the command and all its descendants: the driver,
Ray's GCS, raylet, dashboard head, agents and monitors, the run's sink and the workers. Each process is
counted up to the run's first step (rank 0's time in summary.json), so the total is the work the
machine had to do before training began; on N cores it bounds the start-up from below at total / N.

    python scripts/startup_cpu.py                  # 3 runs, a table per run and the medians
    python scripts/startup_cpu.py --runs 1 --workers 4
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

TICK = os.sysconf("SC_CLK_TCK")
# First match wins: Ray's processes by their command line, ours by the process title Ray gives actors.
ROLES = [("orchestrator.train", "driver (imports, composition, ray.init, torch import, data)"),
         ("gcs_server", "Ray GCS"), ("raylet", "Ray raylet"), ("dashboard/agent.py", "Ray dashboard agent"),
         ("DashboardAgent", "Ray dashboard agent"), ("runtime_env/agent", "Ray runtime-env agent"),
         ("RuntimeEnvAgent", "Ray runtime-env agent"), ("dashboard.py", "Ray dashboard head (API server)"),
         ("log_monitor", "Ray log monitor"), ("monitor.py", "Ray autoscaler monitor"),
         ("ray::Worker", "training worker"), ("ray::RunSink", "run sink (records, checkpoints)"),
         ("default_worker", "Ray worker process, idle")]


def role(cmdline: str) -> str:
    return next((name for key, name in ROLES if key in cmdline), cmdline[:60] or "?")


def processes() -> Tuple[Dict[int, List[int]], Dict[int, Tuple[float, str]]]:
    """(children by parent pid, (CPU seconds, command line or name) by pid) for every process."""
    children, info = collections.defaultdict(list), {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended while we looked
            continue
        close = stat.rindex(")")
        fields = stat[close + 2:].split()
        name = stat[stat.index("(") + 1:close]
        children[int(fields[1])].append(int(entry))
        # A Ray actor renames its process (ray::Worker) without changing the command line it started with.
        info[int(entry)] = ((int(fields[11]) + int(fields[12])) / TICK, f"{cmdline} {name}")
    return children, info


def sample_tree(proc: subprocess.Popen, interval: float = 0.02) -> Dict[int, List[Tuple[float, float, str]]]:
    """pid -> [(unix time, CPU seconds, command)] while the command runs."""
    samples: Dict[int, List[Tuple[float, float, str]]] = collections.defaultdict(list)
    while proc.poll() is None:
        now = time.time()
        children, info = processes()
        stack = [proc.pid]
        while stack:
            pid = stack.pop()
            if pid in info:
                samples[pid].append((now, *info[pid]))
            stack.extend(children.get(pid, []))
        time.sleep(interval)
    return samples


def command(run_dir: Path, workers: int) -> List[str]:
    return [sys.executable, "-m", "orchestrator.train", "model=mlp", "data=synthetic_classification",
            "data.num_features=784", "data.sample_shape=[784]", "data.num_classes=10", "data.num_samples=4096",
            "data.batch_size=64", "data.val_fraction=0.0", f"scaling.num_workers={workers}", "trainer.max_steps=1",
            "checkpoint.every_epoch=false", "optimizer=sgd", f"hydra.run.dir={run_dir}"]


def one_run(workers: int) -> Dict:
    root = Path(tempfile.mkdtemp(prefix="startup_cpu"))
    env = dict(os.environ, RAY_TMPDIR=str(root / "ray"))
    try:
        launched = time.time()
        proc = subprocess.Popen(command(root / "run", workers), cwd=root, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples = sample_tree(proc)
        first_step = json.loads((root / "run" / "summary.json").read_text())["timing"]["first_step_unix"]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    by_role: Dict[str, float] = collections.defaultdict(float)
    count: Dict[str, int] = collections.Counter()
    for series in samples.values():
        before = [s for s in series if s[0] <= first_step]
        if before:
            by_role[role(before[-1][2])] += before[-1][1]
            count[role(before[-1][2])] += 1
    return {"shell_to_first_step_s": first_step - launched, "cpu_s": dict(by_role), "processes": dict(count)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    runs = []
    for i in range(args.runs):
        runs.append(one_run(args.workers))
        r = runs[-1]
        print(f"run {i + 1}: shell to first step {r['shell_to_first_step_s']:.2f} s, "
              f"CPU before it {sum(r['cpu_s'].values()):.2f} s", flush=True)
    roles = sorted({k for r in runs for k in r["cpu_s"]}, key=lambda k: -statistics.median(
        [r["cpu_s"].get(k, 0.0) for r in runs]))
    cores = os.cpu_count() or 1
    total = statistics.median([sum(r["cpu_s"].values()) for r in runs])
    print(f"\nmedian of {len(runs)} run(s), {args.workers} workers, {cores} CPUs:")
    print("| process | processes | CPU s before the first step |\n|---|---:|---:|")
    for k in roles:
        print(f"| {k} | {runs[-1]['processes'].get(k, 0)} | {statistics.median([r['cpu_s'].get(k, 0.0) for r in runs]):.2f} |")
    print(f"| all | | {total:.2f} |")
    print(f"\nshell to first step: median {statistics.median([r['shell_to_first_step_s'] for r in runs]):.2f} s; "
          f"the CPU work alone needs {total / cores:.2f} s on {cores} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
