"""Peak memory of one orchestrator job by role, sampled from outside while it runs: the driver (the
spawned ``python -m orchestrator.train``), each Ray worker actor (a ``ray::Worker`` process of the
job's raylet, with its own children such as DataLoader workers), and the whole job tree.

Per worker: RSS (resident pages, shared ones included: the object-store pages it has touched) and
USS (pages only it holds). The job total is PSS (shared pages split among their users), so the
object store and the workers' mappings of it are counted once. Also the size of the run's Ray temp
dir, where Ray spills or fallback-allocates objects that do not fit the object store.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import psutil

from bench.measure import safe_children

WORKER_TITLE = "ray::Worker"  # Ray sets an actor's process title to ray::<class>[.<method>]


@dataclass
class RolePeaks:
    driver_rss: int = 0
    total_pss: int = 0
    ray_tmp_bytes: int = 0
    worker_rss: Dict[int, int] = field(default_factory=dict)  # by actor pid
    worker_uss: Dict[int, int] = field(default_factory=dict)
    samples: int = 0


def is_worker(proc: psutil.Process) -> bool:
    try:
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return bool(cmdline) and cmdline[0].startswith(WORKER_TITLE)


def tree_of(proc: psutil.Process) -> List[psutil.Process]:
    return [proc, *safe_children(proc)]


def summed(procs: List[psutil.Process], what: str) -> int:
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss if what == "rss" else getattr(p.memory_full_info(), what)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            pass
    return total


def dir_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        if "logs" in Path(root).parts:
            continue
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512  # allocated, not sparse size
            except OSError:
                pass
    return total


def sample_once(driver: psutil.Process, ray_tmp: Path, peaks: RolePeaks, seen: dict) -> None:
    procs = tree_of(driver)
    for p in procs:
        seen.setdefault(p.pid, p)
    peaks.driver_rss = max(peaks.driver_rss, summed([driver], "rss"))
    for worker in (p for p in procs if is_worker(p)):
        own = tree_of(worker)
        peaks.worker_rss[worker.pid] = max(peaks.worker_rss.get(worker.pid, 0), summed(own, "rss"))
        peaks.worker_uss[worker.pid] = max(peaks.worker_uss.get(worker.pid, 0), summed(own, "uss"))
    peaks.total_pss = max(peaks.total_pss, summed(procs, "pss"))
    peaks.ray_tmp_bytes = max(peaks.ray_tmp_bytes, dir_bytes(ray_tmp))
    peaks.samples += 1


def sample_roles(driver: psutil.Process, ray_tmp: Path, interval: float, stop: threading.Event,
                 peaks: RolePeaks, seen: dict) -> None:
    """Sampler thread, at nice 19 so that it takes as little as possible from the job's two cores."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass
    while not stop.is_set():
        sample_once(driver, ray_tmp, peaks, seen)
        stop.wait(interval)
