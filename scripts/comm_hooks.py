#!/usr/bin/env python
"""DDP communication hooks side by side: torchrun and the orchestrator, each with none / fp16 / powersgd,
on the all-reduce-bound 20M-parameter MLP (wide_mlp) at 2 workers.

    python scripts/comm_hooks.py --reps 3 --steps 2000     # 200 wide_mlp steps per run (its steps_scale 0.1)

Both peers register the same torch hook (bench/torchrun_runner.py --comm-hook builds it with the
orchestrator's hook_for; the orchestrator takes trainer.ddp.comm_hook), PowerSGD from step 2 so that the
steady part after the warm-up is all compressed. Runs are interleaved (rep 1 of all six, then rep 2, ...)
through the benchmark harness (bench/execute.run_one: same launch clock, memory sampling, own Ray temp dir
per run). Reports steady samples/s, the ratio to the same runner without a hook, and the loss: rank 0's
last-batch loss (torchrun) and the run's train/loss (orchestrator, the mean across ranks of the last
log interval), with both curves in the chart. Writes comm_hooks.{md,json,png} to --out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))

from bench.comm_hooks_report import HOOKS, PEER_ROWS, chart, markdown  # noqa: E402
from bench.execute import run_one  # noqa: E402
from bench.peers import RunSettings  # noqa: E402
from bench.workloads import steps_for  # noqa: E402

WORKLOAD, WORKERS = "wide_mlp", 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2000, help="benchmark steps (wide_mlp runs a tenth)")
    parser.add_argument("--num-samples", type=int, default=4096)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--out", type=Path, default=SCRIPTS / "results" / time.strftime("%Y-%m-%d"))
    parser.add_argument("--render", action="store_true", help="only redraw md and png from --out's json")
    args = parser.parse_args()
    if args.render:
        write_outputs(args, json.loads((args.out / "comm_hooks.json").read_text())["runs"])
        return 0
    ray_tmp_root = Path(tempfile.mkdtemp(prefix="ch", dir="/tmp"))
    logs = Path(tempfile.mkdtemp(prefix="comm_hooks_logs_"))
    settings = RunSettings(steps=args.steps, warmup=max(5, args.steps // 10), num_samples=args.num_samples,
                           timeout=args.timeout, mem_interval=0.5, ray_tmp_root=ray_tmp_root)
    runners = [PEER_ROWS[(peer, hook)] for peer in ("torchrun", "orchestrator") for hook in HOOKS]
    rows = []
    try:
        for rep in range(1, args.reps + 1):
            for runner in runners:
                print(f"rep {rep} {runner} ...", end=" ", flush=True)
                row = run_one(runner, WORKLOAD, WORKERS, rep, settings, logs)
                rows.append(row)
                print(row["status"], f"{row.get('samples_per_sec') or 0:,.0f} samples/s", row["note"], flush=True)
                write_outputs(args, rows)
    finally:
        shutil.rmtree(ray_tmp_root, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def write_outputs(args, rows: list) -> None:
    steps, warmup = steps_for(WORKLOAD, args.steps, max(5, args.steps // 10))
    header = (f"# DDP communication hooks, torchrun and the orchestrator ({time.strftime('%Y-%m-%d %H:%M')})\n\n"
              f"`python scripts/comm_hooks.py --reps {args.reps} --steps {args.steps}`: {WORKLOAD} (20M parameters, "
              f"batch 32 per worker, SGD momentum), {WORKERS} workers, {steps} steps ({warmup} warm-up), "
              "interleaved reps on a 2-core machine shared with other engineers. Median (min-max) over reps.")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "comm_hooks.md").write_text(markdown(rows, header))
    (args.out / "comm_hooks.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                          "runs": rows}, indent=1))
    chart(rows, args.out / "comm_hooks.png")


if __name__ == "__main__":
    sys.exit(main())
