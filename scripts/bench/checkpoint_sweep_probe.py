"""Checkpoint sweep, the running part: one real run through ``orchestrator.run(...)`` in a process of its
own (the driver), with its own Ray temp dir; every 0.2 s the kernel's peak-RSS mark (VmHWM) of the driver
and of each Ray process in its tree (the ranks, the run sink) is read, so the peaks are exact up to the
last 0.2 s of a process's life. After the run, summary.json says which pid was rank 0, and TensorBoard's
event files give every checkpoint's ``checkpoint/blocked_ms`` and ``checkpoint/write_ms``.

Only processes of this run are touched (descendants of the driver we started), only by PID.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import psutil

from bench.world_sweep_probe import REPO, kill_tree, peak_rss_bytes, title

SAMPLE_EVERY_S = 0.2
MODES = {  # before: bytes through the driver, written synchronously; after: rank 0 writes, in the background
    "before": ["checkpoint.transport=driver", "checkpoint.async_save=false"],
    "after": ["checkpoint.transport=direct", "checkpoint.async_save=true"],
}
# The driver: orchestrator.run(...) as a user's script would call it.
RUN_SNIPPET = ("import sys, orchestrator; "
               "r = orchestrator.run(sys.argv[2:], run_dir=sys.argv[1], show_progress=False); "
               "sys.exit(0 if r.status == 'completed' else 1)")


def overrides(state_mb: float, steps: int, every: int) -> List[str]:
    """2 workers, the sweep's model at ``state_mb`` MiB of parameters + Adam state, a checkpoint every
    ``every`` steps, validation off (so nothing but training and checkpoints)."""
    return ["model=custom", "model._target_=bench.state_size_model.StateOfSize", f"+model.state_mb={state_mb}",
            "optimizer=adam", "data=synthetic_classification", "data.num_features=64", "data.num_samples=512",
            "data.batch_size=16", "data.val_fraction=0.0", "scaling.num_workers=2", f"trainer.max_steps={steps}",
            "trainer.max_epochs=1000", "trainer.log_every_n_steps=1", f"checkpoint.every_n_steps={every}",
            "checkpoint.every_epoch=false", "checkpoint.keep_last=2", "failure.max_failures=0"]


@dataclass
class Probe:
    """Peak RSS (VmHWM, bytes) by pid and what each process was, sampled while the run lasted."""
    peaks: Dict[int, int] = field(default_factory=dict)
    titles: Dict[int, str] = field(default_factory=dict)


def sample(driver: psutil.Process, probe: Probe, done: threading.Event) -> None:
    while not done.is_set():
        try:
            procs = [driver, *driver.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for proc in procs:
            name = "driver" if proc.pid == driver.pid else title(proc)
            if name is None or not (name == "driver" or name.startswith("ray::")):
                continue
            try:
                probe.peaks[proc.pid] = max(probe.peaks.get(proc.pid, 0), peak_rss_bytes(proc.pid))
            except (FileNotFoundError, ProcessLookupError):
                continue
            if not name.startswith("ray::IDLE"):
                probe.titles[proc.pid] = name
        done.wait(SAMPLE_EVERY_S)


def run_one(state_mb: float, mode: str, runs_root: Path, steps: int, every: int, timeout_s: float) -> dict:
    run_dir = runs_root / f"{int(state_mb)}mb_{mode}"
    ray_tmp = tempfile.mkdtemp(prefix="cks", dir="/tmp")  # short: Ray's socket paths are length-limited
    env = dict(os.environ, RAY_TMPDIR=ray_tmp, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "scripts")]))  # bench.* on the workers too
    command = [sys.executable, "-c", RUN_SNIPPET, str(run_dir), *overrides(state_mb, steps, every), *MODES[mode]]
    probe, done = Probe(), threading.Event()
    started = time.time()
    with open(runs_root / f"{run_dir.name}.log", "w") as log:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    sampler = threading.Thread(target=sample, args=(psutil.Process(proc.pid), probe, done), daemon=True)
    sampler.start()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        proc.wait(timeout=30)
    finally:
        done.set()
        sampler.join(timeout=10)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return row(state_mb, mode, run_dir, proc.returncode, time.time() - started, probe)


def row(state_mb: float, mode: str, run_dir: Path, exit_code: int, wall_s: float, probe: Probe) -> dict:
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    ranks = {w["rank"]: w["pid"] for w in summary.get("workers", [])}
    timings = checkpoint_timings(run_dir / "tb")
    manifests = sorted((run_dir / "checkpoints").glob("step-*.json"))
    sinks = [pid for pid, name in probe.titles.items() if name.startswith("ray::RunSink")]
    mib = lambda pid: probe.peaks.get(pid, 0) / 2**20 if pid is not None else None  # noqa: E731
    return {
        "state_mb": state_mb, "mode": mode, "exit_code": exit_code,
        "transport": (summary.get("checkpoints") or {}).get("transport"),
        "checkpoint_file_mb": (json.loads(manifests[-1].read_text())["bytes"] / 2**20) if manifests else None,
        "checkpoints": len(timings["blocked_ms"]),
        "blocked_ms": timings["blocked_ms"], "write_ms": timings["write_ms"],
        "blocked_ms_median": median(timings["blocked_ms"]), "write_ms_median": median(timings["write_ms"]),
        "rank0_peak_rss_mb": mib(ranks.get(0)), "rank1_peak_rss_mb": mib(ranks.get(1)),
        "driver_peak_rss_mb": mib(next((p for p, n in probe.titles.items() if n == "driver"), None)),
        "run_sink_peak_rss_mb": max((mib(p) for p in sinks), default=None),
        "wall_s": wall_s, "run_wall_time_s": summary.get("wall_time_s"),
        "steps": summary.get("steps"),
    }


def checkpoint_timings(tb_dir: Path) -> Dict[str, List[float]]:
    """Every checkpoint's blocked and write time, in step order, read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = {"blocked_ms": [], "write_ms": []}
    if not tb_dir.is_dir():
        return found
    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    for key in found:
        tag = f"checkpoint/{key}"
        if tag in acc.Tags()["scalars"]:
            found[key] = [e.value for e in sorted(acc.Scalars(tag), key=lambda e: e.step)]
    return found


def median(values: List[float]) -> Optional[float]:
    return statistics.median(values) if values else None
