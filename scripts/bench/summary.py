"""From every repetition's row to one line per (workload, workers, runner): pure, table-testable.

Each figure is the median over the repetitions that succeeded, with its spread (min and max) for
start-up, samples/s and ms/step. Against the baseline (torchrun, same workload and workers):
per-step overhead in milliseconds (median ms/step minus torchrun's) and the ratios, each with the
spread of this runner's repetitions against torchrun's median.
"""

from __future__ import annotations

import statistics
from typing import Optional

from bench.peers import BASELINE, OK, PEERS
from bench.workloads import WORKLOADS

MEDIAN_ONLY = ("peak_mem_mb", "wall_s", "data_wait_pct", "own_clock_startup_s")
WITH_SPREAD = ("startup_s", "samples_per_sec", "ms_per_step")


def spread(values: list) -> tuple:
    """(min, median, max) of the values that are there; (None, None, None) for none."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None, None
    return min(values), statistics.median(values), max(values)


def summarise(rows: list) -> list:
    """Medians and spreads per (workload, workers, runner), plus overhead and ratios to the baseline."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["workload"], r["workers"], r["runner"]), []).append(r)
    summary = [summarise_group(workload, workers, runner, rs) for (workload, workers, runner), rs in groups.items()]
    add_baseline_comparison(summary)
    runner_order = {name: i for i, name in enumerate(PEERS)}
    workload_order = {name: i for i, name in enumerate(WORKLOADS)}
    summary.sort(key=lambda s: (workload_order[s["workload"]], s["workers"], runner_order[s["runner"]]))
    return summary


def summarise_group(workload: str, workers: int, runner: str, rows: list) -> dict:
    ok = [r for r in rows if r["status"] == OK]
    s = {"workload": workload, "workers": workers, "runner": runner, "reps_ok": len(ok), "reps": len(rows),
         "note": "; ".join(sorted({r["note"] for r in rows if r["note"]}))}
    for key in MEDIAN_ONLY:
        s[key] = spread([r.get(key) for r in ok])[1]
    for key in WITH_SPREAD:
        s[f"{key}_min"], s[key], s[f"{key}_max"] = spread([r.get(key) for r in ok])
    return s


def add_baseline_comparison(summary: list) -> None:
    base = {(s["workload"], s["workers"]): s for s in summary if s["runner"] == BASELINE}
    for s in summary:
        b = base.get((s["workload"], s["workers"])) or {}
        s["overhead_ms"] = difference(s["ms_per_step"], b.get("ms_per_step"))
        s["throughput_ratio"] = ratio(s["samples_per_sec"], b.get("samples_per_sec"))
        # The spread of this runner's repetitions against the baseline's median (the chart's error bars).
        for end in ("min", "max"):
            s[f"overhead_ms_{end}"] = difference(s[f"ms_per_step_{end}"], b.get("ms_per_step"))
            s[f"throughput_ratio_{end}"] = ratio(s[f"samples_per_sec_{end}"], b.get("samples_per_sec"))
        s["startup_ratio"] = ratio(s["startup_s"], b.get("startup_s"))


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def difference(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a - b if a is not None and b is not None else None
