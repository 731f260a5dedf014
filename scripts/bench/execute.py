"""One run of one peer: scratch dirs, the measured command, and the raw.json row it becomes."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bench import peers
from bench.measure import run_measured
from bench.peers import OK, RunSettings
from bench.workloads import ms_per_step


def run_one(runner: str, workload: str, workers: int, rep: int, settings: RunSettings, logs: Path) -> dict:
    name = f"{runner}_{workload}_w{workers}_r{rep}_n{settings.num_samples}"
    row = {"runner": runner, "workload": workload, "workers": workers, "rep": rep,
           "status": OK, "note": "", "log": str(logs / f"{name}.log")}
    # Scratch space for the run (Hydra run dir, Ray Train storage, Ray's session files), removed even if
    # the run is ended. Ray's gets a short path of its own (its socket paths must stay under 108 bytes).
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench_{runner}_"))
    ray_tmp = Path(tempfile.mkdtemp(dir=settings.ray_tmp_root))
    try:
        cmd = peers.command(runner, workload, workers, settings, run_dir)
        row["cmd"] = cmd
        m = run_measured(cmd, logs / f"{name}.log", settings.timeout, settings.mem_interval, ray_tmp)
        outcome = peers.read_outcome(runner, m, run_dir, logs / f"{name}.summary.json")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)

    peak = m.peak_mem_bytes
    row.update(start_unix=m.launch_unix, wall_s=m.wall_s, peak_mem_mb=None if peak is None else peak / 2**20,
               mem_samples=m.mem_samples, pss_reads=m.pss_reads, returncode=m.returncode,
               status=outcome.status, note=outcome.note)
    if outcome.status != OK:
        return row
    row.update(startup_s=outcome.startup_s, samples_per_sec=outcome.samples_per_sec,
               ms_per_step=ms_per_step(outcome.samples_per_sec, workload, workers),
               data_wait_pct=outcome.data_wait_pct, own_clock_startup_s=outcome.own_clock_startup_s,
               result=outcome.result)
    return row
