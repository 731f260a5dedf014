"""Helpers shared by the tests (imported as ``tests.helpers``, so its body runs once per session).

Ray's session files go to a temp dir made for this test session (RAY_TMPDIR, inherited by the
command-line runs the tests start); conftest removes it at the end.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import psutil

# Before anything imports ray: Ray's temp dir (short path: unix socket names have a length limit).
# Processes the tests start (Ray workers that unpickle a test's function import this module too) reuse the
# session's dir instead of making one of their own that nobody removes.
RAY_TMP = os.environ.get("ORCHESTRATOR_TEST_RAY_TMP") or tempfile.mkdtemp(prefix="rt", dir="/tmp")
os.environ["ORCHESTRATOR_TEST_RAY_TMP"] = RAY_TMP
os.environ["RAY_TMPDIR"] = RAY_TMP
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only, as the CLI does
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports (or metadata probes) off this machine
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

REPO = Path(__file__).resolve().parent.parent


def read_scalars(tb_dir: Path) -> Dict[str, List[Tuple[int, float]]]:
    """All scalar series in a run's event files, read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def corrupt_first_image(shard: Path) -> None:
    """A tar shard's first PNG overwritten with bytes that are no image (same length: the tar stays valid)."""
    import tarfile

    with tarfile.open(shard) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith(".png"))
    data = bytearray(shard.read_bytes())
    data[member.offset_data:member.offset_data + member.size] = b"x" * member.size
    shard.write_bytes(bytes(data))


def compose(*overrides: str):
    from orchestrator.api import compose as compose_config

    return compose_config(list(overrides))


# Small, fast runs for end-to-end tests.
FAST = ("trainer.max_epochs=2", "trainer.log_every_n_steps=2", "checkpoint.every_epoch=true",
        "failure.hang_timeout_s=60")


# ----------------------------------------------------------------------------- command-line runs
def processes_using(ray_tmp: Path):
    """Processes started for a run: they carry its Ray temp dir in their command line or environment."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if str(ray_tmp) in " ".join(proc.info["cmdline"] or []) or \
                    proc.environ().get("RAY_TMPDIR") == str(ray_tmp):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def wait_until_gone(ray_tmp: Path, seconds: float = 15.0):
    deadline = time.time() + seconds
    while time.time() < deadline and processes_using(ray_tmp):
        time.sleep(0.5)
    return processes_using(ray_tmp)


def train_command(run_dir: Path, *overrides: str):
    return [sys.executable, "-m", "orchestrator.train", f"hydra.run.dir={run_dir}", *overrides]
