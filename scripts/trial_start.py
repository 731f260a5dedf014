#!/usr/bin/env python
"""Trial start time of a search with and without warm gangs: a 12-trial random search (the MLP on the
digits, 2 workers, one trial at a time so that every trial after the first has a start to measure),
run once with search.warm_gangs=true and once with false, on a local Ray of its own.

    python scripts/trial_start.py --trials 12 --out scripts/results/2026-12-01

Trial start = the previous trial's gang use ended -> this trial's first step (the search's own
figure, ``trial_start_s`` in search.json). It splits into: between trials (the previous run's summary
and TensorBoard close, the next point from Optuna, composing its config) and launch -> first step
(run dir checks, data to the object store, the run's sink, the gang: taken warm or placed, started
and joined; then the workers build the trial's model, optimizer and data and take a step).
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_S = 0.5


def search(sweep_dir: Path, trials: int, warm: bool) -> Dict:
    import orchestrator

    started = time.time()
    summary = orchestrator.run_search(["search=random", "model=mlp", "trainer.max_epochs=2",
                                       f"search.num_trials={trials}", "search.max_concurrent=1",
                                       f"search.warm_gangs={str(warm).lower()}"], sweep_dir=sweep_dir)
    wall = time.time() - started
    rows = sorted(json.loads((sweep_dir / "trials.json").read_text()), key=lambda r: r["number"])
    per_trial, previous_release = [], None
    for row in rows:
        timing = json.loads((Path(row["run_dir"]) / "summary.json").read_text())["timing"]
        if previous_release is not None and row["start_s"] is not None:
            per_trial.append({"trial": row["number"], "status": row["status"], "warm_gang": row["warm_gang"],
                              "start_s": row["start_s"],
                              "between_trials_s": timing["command_start_unix"] - previous_release,
                              "launch_to_first_step_s": timing["first_step_unix"] - timing["command_start_unix"]})
        previous_release = timing.get("gang_released_unix")
    return {"warm_gangs": warm, "wall_s": wall, "summary_trial_start_s": summary.get("trial_start_s"),
            "statuses": {s: sum(r["status"] == s for r in rows) for s in ("completed", "pruned", "failed")},
            "trials": per_trial, **stats(per_trial)}


def stats(rows: List[Dict]) -> Dict:
    out = {}
    for key in ("start_s", "between_trials_s", "launch_to_first_step_s"):
        values = [r[key] for r in rows]
        out[key] = {"median": statistics.median(values), "worst": max(values)} if values else None
    return out


def markdown(results: List[Dict], trials: int) -> str:
    lines = [f"# Trial start time, {trials}-trial random search (MLP, 2 workers, one trial at a time)", "",
             "Trial start = previous trial's gang use ended -> next trial's first step "
             f"(target < {TARGET_S} s with warm gangs).", "",
             "| warm gangs | trials measured | trial start median (s) | worst (s) | between trials median (s) "
             "| launch -> first step median (s) | search wall (s) |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {'on' if r['warm_gangs'] else 'off'} | {len(r['trials'])} | {r['start_s']['median']:.2f} "
                     f"| {r['start_s']['worst']:.2f} | {r['between_trials_s']['median']:.2f} "
                     f"| {r['launch_to_first_step_s']['median']:.2f} | {r['wall_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--out", type=Path, default=None, help="write trial_start.json and .md here")
    args = parser.parse_args()

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray_tmp = tempfile.mkdtemp(prefix="ts", dir="/tmp")  # Ray's session files, our own, removed at the end
    os.environ["RAY_TMPDIR"] = ray_tmp
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False)
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="trial_start_") as tmp:
            for warm in (True, False):
                results.append(search(Path(tmp) / ("warm" if warm else "cold"), args.trials, warm))
    finally:
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    text = markdown(results, args.trials)
    print("\n" + text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "trial_start.json").write_text(json.dumps(
            {"command": " ".join(["python", *sys.argv]), "cpus": os.cpu_count(), "results": results}, indent=1))
        (args.out / "trial_start.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
