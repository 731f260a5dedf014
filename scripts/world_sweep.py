#!/usr/bin/env python
"""How the driver's costs grow with the world size: 1, 2, 4, ... ranks of a tiny MLP on one machine.

    python scripts/world_sweep.py --sizes 1,2,4,8,16,32

Each size is one `python -m orchestrator.train` subprocess with its own Ray (32 logical CPUs offered
whatever the size, so Ray is set up alike and every gang fits). The sweep samples the driver process
(CPU seconds, peak RSS), waits for the run's first checkpoint and 10 s of training, SIGKILLs one rank,
waits for the recovery, lets it train 5 s more and stops it with Ctrl-C. The rest comes from the run's
summary.json: start-up phases (timing), record bytes that reached the driver (driver_inbound) and the
restart. Writes world_sweep.md, .json and .png to --out. One run per size: on a shared machine the
numbers carry the load of the moment (the md says what the load average was).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))           # bench.*
sys.path.insert(0, str(ROOT.parent))    # orchestrator (the heartbeat's size)

from bench.world_sweep_chart import chart  # noqa: E402
from bench.world_sweep_plan import SIZES, row, timeout_for  # noqa: E402
from bench.world_sweep_probe import run_one  # noqa: E402
from bench.world_sweep_report import markdown  # noqa: E402


def heartbeat_bytes() -> int:
    """What one rank's answer to the driver's once-a-second poll weighs (pickled, mid-run values)."""
    from orchestrator.records import Heartbeat

    return len(pickle.dumps(Heartbeat(rank=31, step=123456, phase="train", progress=123456),
                            protocol=pickle.HIGHEST_PROTOCOL))


def read_summary(run_dir: Path):
    path = run_dir / "summary.json"
    return json.loads(path.read_text()) if path.exists() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--timeout-base-s", type=float, default=300.0, help="per run: this + 20 s per rank")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / time.strftime("%Y-%m-%d"))
    parser.add_argument("--keep-runs", type=Path, default=None, help="keep the run dirs here (default: temp)")
    parser.add_argument("--render", type=Path, default=None,
                        help="only redraw the table and chart from this world_sweep.json")
    args = parser.parse_args()
    if args.render:
        saved = json.loads(args.render.read_text())
        write_outputs(args.out, saved["rows"], saved["load_average"], Path(saved.get("runs_root", "?")))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    runs_root = args.keep_runs or Path(tempfile.mkdtemp(prefix="world_sweep_"))
    hb = heartbeat_bytes()
    rows, loads = [], []
    for n in sizes:
        load_before = os.getloadavg()[0]
        run_dir = runs_root / f"world{n}"
        obs = run_one(n, run_dir, timeout_for(n, args.timeout_base_s))
        loads.append((load_before, os.getloadavg()[0]))
        rows.append(row(obs, read_summary(run_dir), hb))
        r = rows[-1]
        print(f"{n:>3} ranks: {r['status']}; launch->first step {fmt(r['launch_to_first_step_s'])} s, "
              f"driver CPU {fmt(r['driver_cpu_total_s'])} s, peak RSS {fmt(r['driver_peak_rss_mb'])} MB, "
              f"{fmt(r['inbound_bytes_per_s'])} B/s to the driver, kill->first step "
              f"{fmt(r['kill_to_first_step_s'])} s {r['note']}", flush=True)
        write_outputs(args.out, rows, loads, runs_root)
    return 0


def write_outputs(out: Path, rows, loads, runs_root: Path) -> None:
    """After every size, so a sweep cut short still leaves its table."""
    load_text = ", ".join(f"{r['world_size']} ranks: {a:.1f} -> {b:.1f}" for r, (a, b) in zip(rows, loads))
    header = (f"# World size sweep ({time.strftime('%Y-%m-%d %H:%M')})\n\n"
              "`python scripts/world_sweep.py` on a 2-core machine shared with other engineers' test runs: "
              f"one run per size; 1-minute load average at each run's start -> end ({load_text}). "
              "Absolute numbers carry that load; the trend across sizes is the point.")
    (out / "world_sweep.md").write_text(markdown(rows, header, NOTES))
    (out / "world_sweep.json").write_text(json.dumps({"rows": rows, "load_average": loads, "runs_root": str(runs_root)}, indent=1))
    flat = [x for pair in loads for x in pair]
    chart(rows, out / "world_sweep.png", f"1-min load average {min(flat):.1f}-{max(flat):.1f}")


NOTES = [
    "Driver CPU and peak RSS: the `python -m orchestrator.train` process itself (psutil, every 0.5 s; peak = "
    "VmHWM). Ray head: its gcs_server, raylet and helper processes (the ranks and idle pool workers excluded). "
    "Records to the driver: pickled bytes of what the driver drained from the run's sink (summary "
    "`driver_inbound`) per second of training, the recovery gap left out. Heartbeats: the driver's "
    "once-a-second poll of every rank, estimated as ranks x the size of one pickled Heartbeat (not counted "
    "by the run). SIGKILL: sent to one `ray::Worker` process of the run 10 s after its first checkpoint; "
    "detected and first step from the run's `restarts` record. Steps/s: before the kill.",
]


def fmt(value) -> str:
    return f"{value:.1f}" if isinstance(value, (int, float)) else "-"


if __name__ == "__main__":
    sys.exit(main())
