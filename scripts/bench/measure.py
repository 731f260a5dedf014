"""Run one command and measure it from outside: start clock, wall time, peak memory of its process tree.

The start-up clock is the driver's time.time() just before it spawns the command; it is passed to
the command in LAUNCH_ENV, so every peer's first step is measured from the same moment: the one at
which a user's shell would start the interpreter.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import psutil

from bench.workloads import LAUNCH_ENV

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
# Re-read the (costly) PSS when the process tree's RSS has grown by more than this fraction.
PSS_RSS_GROWTH = 0.01


@dataclass
class Measured:
    launch_unix: float  # just before spawning: the start-up clock starts here
    returncode: int
    timed_out: bool
    wall_s: float
    peak_mem_bytes: Optional[int]
    mem_samples: int
    pss_reads: int
    output: str


def child_env(ray_tmp: Path) -> dict:
    env = dict(os.environ)
    # Each run's temp files go to its own temp dir, removed after the run: Ray's session files and
    # torchrun's torchelastic_* dirs would otherwise stay behind.
    env["RAY_TMPDIR"] = env["TMPDIR"] = str(ray_tmp)
    # One thread per worker everywhere; the bench package and `models` importable in every process
    # (Ray's workers inherit this environment through the raylet).
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(SCRIPTS), env.get("PYTHONPATH")]))
    # Never let a runner join someone else's Ray cluster, nor phone home (this machine is offline).
    env.pop("RAY_ADDRESS", None)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # every peer's Ray (Ray Train's too) on loopback only
    return env


def run_measured(cmd: list, log_path: Path, timeout: float, mem_interval: float, ray_tmp: Path) -> Measured:
    """Spawn cmd, sample its process tree's memory until it exits, end whatever it left behind."""
    seen: dict = {}
    peak = {"bytes": None, "samples": 0, "pss_reads": 0}
    env = child_env(ray_tmp)
    with open(log_path, "w") as log:
        launch_unix = time.time()
        env[LAUNCH_ENV] = repr(launch_unix)
        proc = psutil.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # own process group, so a timeout can end all of it
        stop = threading.Event()
        sampler = threading.Thread(target=sample_memory, args=(proc, mem_interval, stop, seen, peak), daemon=True)
        if mem_interval > 0:
            sampler.start()
        try:
            proc.wait(timeout=timeout)
            timed_out = False
        except psutil.TimeoutExpired:
            timed_out = True
        wall = time.time() - launch_unix
        stop.set()
        if sampler.is_alive():
            sampler.join()
        if timed_out:
            end_processes([proc, *safe_children(proc), *seen.values()])
        returncode = proc.wait()
    end_leftovers(proc, seen, ray_tmp)
    return Measured(launch_unix=launch_unix, returncode=returncode, timed_out=timed_out, wall_s=wall,
                    peak_mem_bytes=peak["bytes"], mem_samples=peak["samples"], pss_reads=peak["pss_reads"],
                    output=log_path.read_text(errors="replace"))


def end_leftovers(proc: psutil.Process, seen: dict, ray_tmp: Path) -> None:
    """Whatever the command left behind is ours to end: descendants seen while sampling, and the Ray
    processes of its own RAY_TMPDIR (daemonised, they may never have been seen; they write there until gone)."""
    found = {p.pid: p for p in [*seen.values(), *processes_using(ray_tmp)]}
    leftovers = [p for p in found.values() if p.pid != proc.pid and p.is_running()]
    if leftovers:
        psutil.wait_procs(leftovers, timeout=10)
        end_processes(leftovers)


def sample_memory(proc: psutil.Process, interval: float, stop: threading.Event, seen: dict, peak: dict) -> None:
    """Sampler thread: every `interval` s, the summed PSS of proc and all its descendants; keep the max.

    Reading PSS is not cheap: the kernel walks every mapping of the process under its memory-map
    lock (~5 ms per torch process here, ~40 ms for a whole Ray Train tree). Read every 0.1 s on
    2 cores, it lowered the measured throughput by ~10% in interleaved A/B runs. So every sample
    reads the cheap RSS, and PSS is read again only when the tree's RSS has grown by more than
    PSS_RSS_GROWTH since the last PSS read: often during start-up, rarely once the workers'
    memory is steady. PSS <= RSS and they move together, so the peak is still caught (the A/B
    runs gave the same peaks either way, and throughput as with no sampling at all).
    The thread also runs at nice 19 (Linux niceness is per thread; the spawned command keeps its).
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass
    rss_at_last_pss = 0
    while not stop.is_set():
        procs = [proc, *safe_children(proc)]
        for p in procs:
            seen.setdefault(p.pid, p)
        rss = tree_rss(procs)
        peak["samples"] += 1
        if rss > rss_at_last_pss * (1 + PSS_RSS_GROWTH):
            rss_at_last_pss = rss
            peak["bytes"] = max(peak["bytes"] or 0, tree_pss(procs))
            peak["pss_reads"] += 1
        stop.wait(interval)


def safe_children(proc: psutil.Process) -> list:
    try:
        return proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def tree_rss(procs: list) -> int:
    """Summed RSS in bytes: cheap (/proc/PID/statm), does not disturb the processes."""
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            pass
    return total


def tree_pss(procs: list) -> int:
    """Summed PSS in bytes (RSS where PSS cannot be read).

    PSS splits shared pages among the processes sharing them, so the sum does not count
    torch's shared libraries once per worker as RSS would.
    """
    total = 0
    for p in procs:
        try:
            try:
                total += p.memory_full_info().pss
            except (AttributeError, psutil.AccessDenied):
                total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return total


def end_processes(procs: list) -> None:
    """Terminate, then kill, the given processes (only those this harness spawned or their descendants)."""
    alive = [p for p in procs if p.is_running()]  # is_running also guards against PID reuse
    for p in alive:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(alive, timeout=5)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def processes_using(ray_tmp: Path) -> list:
    """The Ray processes a run started: they carry its own RAY_TMPDIR (in their command line or environment)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if str(ray_tmp) in " ".join(proc.info["cmdline"] or []) or proc.environ().get("RAY_TMPDIR") == str(ray_tmp):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found
