"""World-size sweep, the running part: start one `python -m orchestrator.train` job, sample its driver's
CPU and peak memory, SIGKILL one of its ranks once it has a checkpoint, wait for the recovery, stop it.

Only processes of this job are touched, found as descendants of the driver we started (which runs its
own Ray, in a temp dir of its own), and only by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import psutil

from bench.world_sweep_plan import Observed, overrides

SAMPLE_EVERY_S = 0.5
STEADY_S = 10.0          # training time before the kill (the window the driver's training CPU is taken over)
AFTER_RECOVERY_S = 5.0   # training after the recovery, then a graceful stop (SIGINT)
STOP_GRACE_S = 120.0
REPO = Path(__file__).resolve().parent.parent.parent


def peak_rss_bytes(pid: int) -> int:
    """VmHWM: the kernel's own high-water mark of the process's resident memory."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def title(proc: psutil.Process) -> Optional[str]:
    """Ray renames its workers (ray::Worker, ray::RunSink, ray::IDLE); gcs_server, raylet and the Python
    helpers keep their command line. None for a process that is gone or exiting (a zombie: the killed
    rank, a gang being torn down), whose CPU is then not counted as Ray's head."""
    try:
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    if cmdline and cmdline[0].startswith("ray::"):
        return cmdline[0].strip()
    return " ".join(cmdline) if cmdline else None


class Sampler(threading.Thread):
    """Every SAMPLE_EVERY_S: the driver's CPU seconds and peak RSS, and the CPU of Ray's head processes."""

    def __init__(self, driver_pid: int):
        super().__init__(daemon=True)
        self.driver = psutil.Process(driver_pid)
        self.samples: List[Tuple[float, float, int]] = []
        self.head_cpu: Dict[int, float] = {}   # pid -> last CPU seconds seen (gcs_server, raylet, helpers)
        self.sink_cpu: Dict[int, float] = {}
        self.names: Dict[int, str] = {}         # pid -> what it is (gcs_server, raylet, an agent's module)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                cpu = self.driver.cpu_times()
                self.samples.append((time.time(), cpu.user + cpu.system, peak_rss_bytes(self.driver.pid)))
                self.sample_helpers()
            except (psutil.NoSuchProcess, psutil.ZombieProcess, FileNotFoundError, ProcessLookupError):
                return
            self.done.wait(SAMPLE_EVERY_S)

    def sample_helpers(self) -> None:
        for child in self.driver.children(recursive=True):
            name = title(child)
            if name is None or is_pool_worker(name):
                continue  # a training rank or an idle pool worker: not the driver side
            try:
                cpu = child.cpu_times()
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            target = self.sink_cpu if name.startswith("ray::RunSink") else self.head_cpu
            target[child.pid] = cpu.user + cpu.system
            self.names[child.pid] = short_name(name)


def short_name(name: str) -> str:
    """gcs_server, raylet, ray::<Actor>, or the script a Python helper runs (log_monitor.py, dashboard.py).
    Only a Python process's own script counts: the raylet's arguments name worker scripts too."""
    words = name.split()
    if not words:
        return "?"
    program = Path(words[0]).name
    if not program.startswith("python"):
        return program
    script = next((w for w in words[1:] if w.endswith(".py")), None)
    return Path(script).name if script else program


def by_name(cpu: Dict[int, float], names: Dict[int, str]) -> Dict[str, float]:
    totals: Dict[str, float] = {}
    for pid, seconds in cpu.items():
        totals[names.get(pid, "?")] = totals.get(names.get(pid, "?"), 0.0) + seconds
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


HEAD_ACTORS = ("ray::RunSink", "ray::DashboardAgent", "ray::RuntimeEnvAgent")
WORKER_SCRIPTS = ("default_worker.py", "setup_worker.py")  # setup_worker.py execs default_worker.py


def is_pool_worker(name: str) -> bool:
    """A Ray worker process other than the run's sink and Ray's agents: named ray::<Actor> or ray::IDLE
    once Ray titles it, `python .../default_worker.py ...` before (while it starts and imports). The
    raylet's own arguments name default_worker.py too: only a Python process's script counts."""
    if name.startswith("ray::"):
        return not name.startswith(HEAD_ACTORS)
    words = name.split()
    python = bool(words) and Path(words[0]).name.startswith("python")
    return python and any(word.endswith(WORKER_SCRIPTS) for word in words[1:4])


def worker_pids(driver_pid: int) -> List[int]:
    try:
        children = psutil.Process(driver_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return sorted(c.pid for c in children if (title(c) or "").startswith("ray::Worker"))


def checkpoint_written(run_dir: Path) -> bool:
    folder = run_dir / "checkpoints"
    return folder.is_dir() and any(not p.name.startswith(".") for p in folder.rglob("*") if p.is_file())


def log_says(log_path: Path, text: str) -> bool:
    try:
        return text in log_path.read_text(errors="replace")
    except FileNotFoundError:
        return False


def wait_until(condition, proc: subprocess.Popen, deadline: float) -> bool:
    """True once the condition holds; False when the run ended or the deadline passed first."""
    while time.time() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def stop(proc: subprocess.Popen) -> None:
    """Ctrl-C (graceful: the workers stop at a step boundary), a second one (at once), then SIGKILL by PID."""
    for grace in (STOP_GRACE_S, 30.0):
        if proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            pass
    kill_tree(proc.pid)
    proc.wait(timeout=30)


def kill_tree(pid: int) -> None:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for p in children + [psutil.Process(pid)]:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def run_one(world_size: int, run_dir: Path, timeout_s: float) -> Observed:
    ray_tmp = tempfile.mkdtemp(prefix="ws", dir="/tmp")  # short: Ray's socket paths are length-limited
    env = dict(os.environ, RAY_TMPDIR=ray_tmp, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "orchestrator.train", *overrides(world_size, str(run_dir))]
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir.parent / f"{run_dir.name}.log"
    launch = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    sampler = Sampler(proc.pid)
    sampler.start()
    obs = Observed(world_size, launch, exit_code=None, timed_out=False)
    try:
        drive(proc, obs, run_dir, log_path, launch + timeout_s)
    finally:
        stop(proc)
        sampler.done.set()
        sampler.join(timeout=10)
        obs.exit_code = proc.returncode
        obs.driver_samples = sampler.samples
        obs.ray_head_cpu_s = sum(sampler.head_cpu.values())
        obs.end_unix = time.time()
        obs.ray_head_by_process = by_name(sampler.head_cpu, sampler.names)
        obs.run_sink_cpu_s = sum(sampler.sink_cpu.values())
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return obs


def drive(proc: subprocess.Popen, obs: Observed, run_dir: Path, log_path: Path, deadline: float) -> None:
    """Checkpoint -> STEADY_S of training -> SIGKILL one rank -> recovered -> AFTER_RECOVERY_S -> (stop)."""
    if not wait_until(lambda: checkpoint_written(run_dir), proc, deadline):
        return note_end(obs, proc, deadline, "no checkpoint")
    wait_until(lambda: False, proc, min(deadline, time.time() + STEADY_S))
    victims = worker_pids(proc.pid)
    if not victims or proc.poll() is not None:
        return note_end(obs, proc, deadline, "no worker process to kill")
    obs.killed_pid = victims[-1]
    obs.kill_unix = time.time()
    os.kill(obs.killed_pid, signal.SIGKILL)
    if not wait_until(lambda: log_says(log_path, "recovered in"), proc, deadline):
        return note_end(obs, proc, deadline, "no recovery")
    wait_until(lambda: False, proc, min(deadline, time.time() + AFTER_RECOVERY_S))


def note_end(obs: Observed, proc: subprocess.Popen, deadline: float, what: str) -> None:
    obs.timed_out = proc.poll() is None and time.time() >= deadline
    obs.note = f"{what} ({'timeout' if obs.timed_out else f'run ended, exit {proc.poll()}'})"
