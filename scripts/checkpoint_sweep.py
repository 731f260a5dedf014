#!/usr/bin/env python
"""What a checkpoint costs as the model grows, before and after checkpoints went straight to storage.

    python scripts/checkpoint_sweep.py --sizes 10,100,1024 --reps 1

For each size (MiB of parameters + Adam state, the user model bench/state_size_model.py) and each mode,
one real 2-worker run through ``orchestrator.run(...)``, a checkpoint every --every steps:
  before  checkpoint.transport=driver checkpoint.async_save=false (rank 0 serialises, the bytes travel
          through the run sink, which writes them; training waits for all of it)
  after   checkpoint.transport=direct checkpoint.async_save=true (rank 0 snapshots to host memory, a
          background thread writes the file; only the manifest travels)
Records per run: checkpoint/blocked_ms and checkpoint/write_ms (TensorBoard), peak RSS (VmHWM) of rank 0,
rank 1 (the same model, no checkpoint duty: the baseline), the driver process and the run sink actor, and
the wall time. Modes alternate within a size (before, after, then the next rep). Writes
checkpoint_sweep.{md,json,png} to --out; run dirs go to a temp folder, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # bench.*

from bench.checkpoint_sweep_probe import MODES, run_one  # noqa: E402
from bench.checkpoint_sweep_report import chart, markdown  # noqa: E402

NOTES = [
    "Peak RSS is the kernel's high-water mark (VmHWM) of each process, read every 0.2 s while it lives. Rank 1 "
    "holds the same model, gradients and Adam state as rank 0 but never checkpoints: rank 0 minus rank 1 is "
    "what checkpointing costs rank 0's host memory.",
    "The driver process never held checkpoint bytes in either mode while saving: with transport=driver the "
    "run sink (a Ray actor on the driver's node) receives and writes them, so its column is the 'driver "
    "node' cost of the old path. On restore (not exercised here) the old path also read the file in the "
    "driver and put it in the object store.",
    "blocked = how long the training loop waited for the checkpoint as the run reports it: capture + host "
    "copy (after), capture + serialising (before). write = serialising and writing the file on rank 0 "
    "(after); serialising to bytes on rank 0 (before: the sink writes the file afterwards, in its own "
    "process). Before, rank 0's training thread also waits for handing the bytes to Ray (a copy into the "
    "object store at the sink call), which blocked_ms does not count: the wall time does.",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1024", help="MiB of parameters + Adam state, comma list")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--every", type=int, default=2, help="checkpoint.every_n_steps")
    parser.add_argument("--timeout-s", type=float, default=600)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / time.strftime("%Y-%m-%d"))
    parser.add_argument("--render", action="store_true", help="only redraw md and png from --out's json")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.render:
        rows = json.loads((args.out / "checkpoint_sweep.json").read_text())["rows"]
        write_outputs(args.out, rows, [x for r in rows for x in (r["load_before"], r["load_after"])], args)
        return 0
    runs_root = Path(tempfile.mkdtemp(prefix="ckpt_sweep_"))
    rows, loads = [], []
    try:
        for size in [float(s) for s in args.sizes.split(",")]:
            for rep in range(args.reps):
                for mode in MODES:
                    load = os.getloadavg()[0]
                    r = run_one(size, mode, runs_root, args.steps, args.every, args.timeout_s)
                    r.update(rep=rep, load_before=load, load_after=os.getloadavg()[0])
                    rows.append(r)
                    loads += [load, r["load_after"]]
                    print(progress(r), flush=True)
                    write_outputs(args.out, rows, loads, args)
                    shutil.rmtree(runs_root / f"{int(size)}mb_{mode}", ignore_errors=True)
    finally:
        shutil.rmtree(runs_root, ignore_errors=True)
    return 0 if all(r["exit_code"] == 0 for r in rows) else 1


def progress(r: dict) -> str:
    f = lambda v: "-" if v is None else f"{v:,.0f}"  # noqa: E731
    return (f"{r['state_mb']:,.0f} MiB {r['mode']}: exit {r['exit_code']}, {r['checkpoints']} checkpoints, "
            f"blocked {f(r['blocked_ms_median'])} ms, write {f(r['write_ms_median'])} ms, rank 0 "
            f"{f(r['rank0_peak_rss_mb'])} MiB (rank 1 {f(r['rank1_peak_rss_mb'])}), driver "
            f"{f(r['driver_peak_rss_mb'])} MiB, sink {f(r['run_sink_peak_rss_mb'])} MiB, wall {r['wall_s']:.1f} s")


def write_outputs(out: Path, rows, loads, args) -> None:
    """After every run, so a sweep cut short still leaves its table."""
    header = (f"# Checkpoint sweep ({time.strftime('%Y-%m-%d %H:%M')})\n\n"
              f"`python scripts/checkpoint_sweep.py --sizes {args.sizes} --reps {args.reps} --steps {args.steps} "
              f"--every {args.every}`: 2 workers on one 2-core machine shared with other engineers "
              f"(1-minute load average {min(loads):.1f}-{max(loads):.1f}); {args.reps} run(s) per cell, "
              "so single numbers carry the load of the moment.")
    (out / "checkpoint_sweep.md").write_text(markdown(rows, header, NOTES))
    (out / "checkpoint_sweep.json").write_text(json.dumps({"rows": rows, "args": vars(args) | {"out": str(out)}},
                                                          indent=1))
    chart(rows, out / "checkpoint_sweep.png", f"load {min(loads):.1f}-{max(loads):.1f}, {args.reps} rep(s)")


if __name__ == "__main__":
    sys.exit(main())
