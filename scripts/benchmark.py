#!/usr/bin/env python
"""Compare ways of running the same data-parallel PyTorch training on CPU, side by side.

Peers (each launched as its own command by this driver, measured from outside the same way;
see scripts/bench/peers.py):
  single        one process, one thread, no DDP: the per-core compute floor
  torchrun      the plainest DDP loop under `torchrun --standalone` (gloo): the baseline
  raytrain      Ray Train v2 TorchTrainer on a fresh local Ray started inside the command (needs the `bench` extra)
  orchestrator  this project's `python -m orchestrator.train`, default settings (-log1: logging every step)

Workloads: the 784-128-64-10 MLP (batch 64 per worker), the default CNN (64) and a 20M-parameter MLP
(32), SGD with momentum, no validation, no checkpoints. Per run the driver records its clock just
before spawning the command (passed to it in BENCH_LAUNCH_UNIX) and reports: start-up from that
moment to rank 0's first optimizer step, steady samples/s after the warm-up, ms/step and its
overhead over torchrun's, peak summed PSS of the command's process tree, and wall time.
Repetitions are interleaved (rep 1 of every configuration, then rep 2, ...) so a slow spell of the
machine does not hit one runner only; the table shows median (min-max).

    python scripts/benchmark.py --reps 3 --steps 200
    python scripts/benchmark.py --quick                      # smoke test: 1 rep, 20 steps, mlp only
    python scripts/benchmark.py --runners torchrun,raytrain --workloads wide_mlp --workers 2
    python scripts/benchmark.py --runners orchestrator,orchestrator-fp16,orchestrator-powersgd \
        --workloads wide_mlp --workers 2          # trainer.ddp.comm_hook=none|fp16|powersgd

Writes results.md (table), results.png (chart), raw.json (every rep) and logs/ under --out
(default scripts/results/<date>/).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))

from bench.chart import chart  # noqa: E402
from bench.execute import run_one  # noqa: E402
from bench.memory_check import memory_check  # noqa: E402
from bench.peers import DEFAULT_PEERS, FAILED, OK, PEERS, RunSettings  # noqa: E402
from bench.report import fmt, markdown_table, memory_table  # noqa: E402
from bench.summary import summarise  # noqa: E402
from bench.workloads import THROUGHPUT_WORKLOADS  # noqa: E402


def csv_list(value: str) -> list:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 200)")
    p.add_argument("--warmup", type=int, default=None,
                   help="steps left out of the steady throughput (default: max(5, steps // 10))")
    p.add_argument("--num-samples", type=int, default=4096, help="synthetic dataset size (cycled through)")
    p.add_argument("--runners", type=csv_list, default=None, help=f"comma list from {','.join(PEERS)}")
    p.add_argument("--workloads", type=csv_list, default=None,
                   help=f"comma list from {','.join(THROUGHPUT_WORKLOADS)}")
    p.add_argument("--memory-gb", type=float, default=None,
                   help="also check memory with 2 workers on a synthetic dataset of this size "
                        "(default 1.0; 0 skips; --quick skips unless given)")
    p.add_argument("--workers", type=lambda v: [int(x) for x in csv_list(v)], default=None,
                   help="comma list of worker counts (default 1,2; `single` only runs with 1)")
    p.add_argument("--quick", action="store_true",
                   help="smoke configuration: 1 rep, 20 steps, mlp only (explicit options still win)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default scripts/results/<date>/)")
    p.add_argument("--timeout", type=float, default=1200, help="seconds before one run is ended")
    p.add_argument("--mem-interval", type=float, default=0.1,
                   help="seconds between memory samples; 0 turns memory sampling off")
    args = p.parse_args(argv)
    apply_defaults(args)
    for name, chosen, known in (("runner", args.runners, PEERS), ("workload", args.workloads, THROUGHPUT_WORKLOADS)):
        unknown = set(chosen) - set(known)
        if unknown:
            p.error(f"unknown {name}(s) {sorted(unknown)}; known: {list(known)}")
    if not 0 < args.warmup < args.steps:
        p.error(f"need 0 < --warmup ({args.warmup}) < --steps ({args.steps})")
    return args


def apply_defaults(args) -> None:
    if args.quick:  # smaller defaults; anything given explicitly still wins
        args.reps = args.reps or 1
        args.steps = args.steps or 20
        args.workloads = args.workloads or ["mlp"]
    args.reps = args.reps or 3
    args.steps = args.steps or 200
    args.runners = args.runners or DEFAULT_PEERS
    args.workloads = args.workloads or list(THROUGHPUT_WORKLOADS)
    if args.memory_gb is None:
        args.memory_gb = 0.0 if args.quick else 1.0
    args.workers = args.workers or [1, 2]
    if args.warmup is None:
        args.warmup = max(5, args.steps // 10)
    if args.out is None:
        args.out = SCRIPTS / "results" / datetime.date.today().isoformat()


def plan(workloads: list, workers: list, runners: list, reps: int) -> list:
    """Interleaved order: every configuration once per rep, reps in the outer loop."""
    configs = [(workload, n, runner) for workload in workloads for n in workers for runner in runners
               if not (runner == "single" and n != 1)]
    return [(rep, *c) for rep in range(1, reps + 1) for c in configs]


def versions() -> dict:
    import torch
    try:
        import ray
        ray_version = ray.__version__
    except ImportError:
        ray_version = "not installed"
    return {"torch": torch.__version__, "ray": ray_version, "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "platform": platform.platform()}


def main(argv=None) -> int:
    args = parse_args(argv)
    ray_tmp_root = Path(tempfile.mkdtemp(prefix="rt"))
    settings = RunSettings(steps=args.steps, warmup=args.warmup, num_samples=args.num_samples,
                           timeout=args.timeout, mem_interval=args.mem_interval, ray_tmp_root=ray_tmp_root)
    try:
        return run_benchmark(args, settings)
    finally:
        shutil.rmtree(ray_tmp_root, ignore_errors=True)


def run_benchmark(args, settings: RunSettings) -> int:
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "reps": args.reps,
            "steps": args.steps, "warmup": args.warmup, "num_samples": args.num_samples,
            "runners": args.runners, "workloads": args.workloads, "workers": args.workers, **versions()}
    todo = plan(args.workloads, args.workers, args.runners, args.reps)
    if not todo:
        sys.exit("nothing to run: `single` only runs with 1 worker")
    rows = []
    for i, (rep, workload, workers, runner) in enumerate(todo, start=1):
        print(f"[{i}/{len(todo)}] rep {rep} {workload} workers={workers} {runner} ...", end=" ", flush=True)
        rows.append(run_one(runner, workload, workers, rep, settings, logs))
        print(progress_line(rows[-1]), flush=True)
        # Keep what has been measured so far, in case a later run hangs or the session ends.
        (args.out / "raw.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=1))
    memory = memory_check(settings, args.memory_gb, logs) if args.memory_gb > 0 else []
    write_results(args.out, meta, rows, memory, args.memory_gb)
    # Non-zero only if a runner that should work failed; skipped rows (e.g. ray[train] not installed) are fine.
    return 1 if any(r["status"] == FAILED for r in rows + memory) else 0


def progress_line(row: dict) -> str:
    if row["status"] != OK:
        return f"{row['status']}: {row['note']}"
    return (f"start-up {row['startup_s']:.2f} s, {row['samples_per_sec']:,.0f} samples/s "
            f"({row['ms_per_step']:.2f} ms/step), peak {fmt(row['peak_mem_mb'], ',.0f')} MiB "
            f"({row['mem_samples']} samples, {row['pss_reads']} PSS reads), wall {row['wall_s']:.1f} s")


def write_results(out: Path, meta: dict, rows: list, memory: list, memory_gb: float) -> None:
    summary = summarise(rows)
    (out / "raw.json").write_text(json.dumps({"meta": meta, "runs": rows, "summary": summary,
                                              "memory": memory}, indent=1))
    table = markdown_table(summary, meta) + memory_table(memory, memory_gb)
    (out / "results.md").write_text(table)
    chart(summary, out / "results.png")
    print()
    print(table)
    print(f"wrote {out / 'results.md'}, {out / 'results.png'}, {out / 'raw.json'}")


if __name__ == "__main__":
    sys.exit(main())
