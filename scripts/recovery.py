#!/usr/bin/env python
"""What a lost worker costs: SIGKILL one worker at a random step, many times, for each recovery path.

    python scripts/recovery.py --runs 10 --workers 2 4 --out scripts/results/2026-12-01

Paths: ``disk`` (failure.recovery=disk: the gang restarts from the last checkpoint), ``peer`` (healed from
a live peer, a new process replaces the dead one) and ``spare`` (healed, a warm spare replaces it:
trainer.spare_workers=1). Runs are interleaved (run i of every path before run i+1) on one shared local Ray;
the killed rank and step are drawn at random (the same draws for every path). The worker kills itself with
SIGKILL at the start of that step (``chaos.kind=exit``), as abruptly as the OOM killer. The numbers come from
each run's summary.json (``restarts``): recovery_s is failure detected -> first step after it; steps_lost is
the work done again. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PATHS = {"disk": ["failure.recovery=disk"], "peer": ["failure.recovery=peer"],
         "spare": ["failure.recovery=peer", "trainer.spare_workers=1"]}


def one_run(run_dir: Path, path: str, workers: int, rank: int, kill_at: int, steps: int, every: int) -> dict:
    import orchestrator

    cpus = int(200 / (workers + 1)) / 100  # the same share per worker for every path (the spare needs its own)
    result = orchestrator.run(
        ["model=mlp", f"trainer.max_steps={steps}", "trainer.max_epochs=1000", "trainer.log_every_n_steps=5",
         f"checkpoint.every_n_steps={every}", "checkpoint.every_epoch=false", f"scaling.num_workers={workers}",
         f"scaling.cpus_per_worker={cpus:g}", "chaos.kind=exit", f"chaos.rank={rank}", f"chaos.at_step={kill_at}",
         *PATHS[path]], run_dir=run_dir, show_progress=False)
    (restart,) = result.summary["restarts"]
    return {"path": restart.get("path"), "workers": workers, "rank": rank, "kill_at": kill_at,
            "resume_step": restart["resume_step"], "steps_lost": restart["steps_lost"],
            "recovery_s": restart["recovery_s"], "heal_setup_s": restart.get("heal_setup_s"),
            "replaced_by": restart.get("replaced_by"), "steps": result.summary["steps"]}


def summarise(rows):
    table = []
    for workers in sorted({r["workers"] for r in rows}):
        for path in PATHS:
            mine = [r for r in rows if r["workers"] == workers and r["mode"] == path]
            if not mine:
                continue
            rec, lost = [r["recovery_s"] for r in mine], [r["steps_lost"] for r in mine]
            table.append({"workers": workers, "path": path, "runs": len(mine),
                          "recovery_median_s": statistics.median(rec), "recovery_max_s": max(rec),
                          "steps_lost_median": statistics.median(lost), "steps_lost_max": max(lost),
                          "healed_from_peer": sum(r["path"] == "peer" for r in mine)})
    return table


def markdown(table, args, load) -> str:
    lines = [f"# Recovery after a SIGKILLed worker ({args.runs} runs per row, interleaved)", "",
             f"`python scripts/recovery.py --runs {args.runs} --workers {' '.join(map(str, args.workers))}` on "
             f"2 cores (load average {load}); MLP on the digits, {args.steps} steps, checkpoints every "
             f"{args.checkpoint_every}, killed rank and step drawn at random (same draws per path).", "",
             "| workers | path | runs | recovery median s | recovery worst s | steps lost median | steps lost worst |"
             " healed from a peer |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for t in table:
        lines.append(f"| {t['workers']} | {t['path']} | {t['runs']} | {t['recovery_median_s']:.2f} | "
                     f"{t['recovery_max_s']:.2f} | {t['steps_lost_median']:g} | {t['steps_lost_max']} | "
                     f"{t['healed_from_peer']} |")
    return "\n".join(lines) + "\n"


def chart(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["workers"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "recovery_s", "recovery s (failure to next step)"),
                           (axes[1], "steps_lost", "steps lost")):
        data, names = [], []
        for workers in sizes:
            for mode in PATHS:
                values = [r[key] for r in rows if r["workers"] == workers and r["mode"] == mode]
                if values:
                    data.append(values)
                    names.append(f"{mode}\n{workers} workers")
        ax.boxplot(data)
        ax.set_xticks(range(1, len(names) + 1), names, fontsize=8)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("A SIGKILLed worker: restart from disk vs healing from a live peer")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    parser.add_argument("--checkpoint-every", type=int, default=25)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="folder for recovery.{json,md,png}")
    args = parser.parse_args()

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray_tmp = tempfile.mkdtemp(prefix="rr", dir="/tmp")  # short: socket paths are limited
    os.environ["RAY_TMPDIR"] = ray_tmp
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False)
    rng = random.Random(args.seed)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="recovery_") as tmp:
            for i in range(args.runs):
                for workers in args.workers:
                    rank, kill_at = rng.randrange(workers), rng.randint(args.checkpoint_every + 5, args.steps * 3 // 4)
                    for path in args.paths:
                        row = one_run(Path(tmp) / f"{path}{workers}-{i}", path, workers, rank, kill_at, args.steps,
                                      args.checkpoint_every)
                        row["mode"] = path
                        rows.append(row)
                        print(f"{path:5s} {workers} workers run {i + 1}: rank {rank} killed at step {kill_at}, "
                              f"{row['path']} recovery from step {row['resume_step']} ({row['steps_lost']} lost) "
                              f"in {row['recovery_s']:.2f} s", flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    table = summarise(rows)
    text = markdown(table, args, " ".join(f"{x:.1f}" for x in os.getloadavg()))
    print("\n" + text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "recovery.json").write_text(json.dumps({"rows": rows, "table": table}, indent=1))
        (args.out / "recovery.md").write_text(text)
        chart(rows, args.out / "recovery.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
