"""What a metrics flush logs about the ranks' step times, with a number of tags bounded by a
config key rather than by the world size.

Up to ``trainer.per_rank_metrics_up_to`` ranks every rank gets its own tags
(``worker/<rank>/step_ms`` ...). Above it a tag per rank stops being readable (256 ranks would be
over a thousand tags), so the flush logs the distribution across ranks instead -- min, median, p90
and max of the step time and of the data wait -- and the ids of the slowest ranks, so a straggler
stays visible. Pure functions of the per-rank means a flush gathered.
"""

from __future__ import annotations

import math
from typing import Dict, List, Mapping, Sequence

PHASES = ("data_s", "compute_s", "optimizer_s", "step_s")  # the per-rank means a flush gathers
QUANTILES = (("min", 0.0), ("median", 0.5), ("p90", 0.9), ("max", 1.0))
SLOWEST_NAMED = 3
SUMMARY_PREFIX = "workers/"
# Read by the input-bound monitor above the threshold (there are no per-rank waits then).
DATA_WAIT_MAX = "workers/data_wait_pct/max"
MOST_WAITING_RANK = "workers/most_waiting_rank"


def rank_scalars(per_rank: Mapping[str, Sequence[float]], per_rank_up_to: int) -> Dict[str, float]:
    """Per-rank tags for small gangs, a bounded summary for gangs larger than ``per_rank_up_to``."""
    world = len(per_rank.get("step_s", ()))
    if world == 0:
        return {}
    if world <= per_rank_up_to:
        return per_rank_tags(per_rank)
    return summary_tags(per_rank)


def per_rank_tags(per_rank: Mapping[str, Sequence[float]]) -> Dict[str, float]:
    values = {}
    for key, seconds in per_rank.items():
        name = key[:-2]  # data_s -> data
        for rank, seconds_per_step in enumerate(seconds):
            values[f"worker/{rank}/{name}_ms"] = 1000.0 * seconds_per_step
    for rank, pct in data_wait_pct(per_rank).items():
        values[f"worker/{rank}/data_wait_pct"] = pct
    return values


def summary_tags(per_rank: Mapping[str, Sequence[float]]) -> Dict[str, float]:
    step_ms = [1000.0 * s for s in per_rank["step_s"]]
    values = distribution("workers/step_ms", step_ms)
    for place, rank in enumerate(slowest(step_ms, SLOWEST_NAMED), start=1):
        values["workers/slowest_rank" if place == 1 else f"workers/slowest_rank_{place}"] = float(rank)
    waits = data_wait_pct(per_rank)
    if waits:
        values.update(distribution("workers/data_wait_pct", list(waits.values())))
        values[MOST_WAITING_RANK] = float(max(waits, key=lambda rank: waits[rank]))
    return values


def data_wait_pct(per_rank: Mapping[str, Sequence[float]]) -> Dict[int, float]:
    """Rank -> share of its step time spent waiting for data (ranks that made no step left out)."""
    step, data = per_rank.get("step_s", ()), per_rank.get("data_s", ())
    return {rank: 100.0 * data[rank] / step[rank] for rank in range(min(len(step), len(data))) if step[rank] > 0}


def distribution(prefix: str, values: List[float]) -> Dict[str, float]:
    ordered = sorted(v for v in values if math.isfinite(v))
    if not ordered:
        return {}
    return {f"{prefix}/{name}": quantile(ordered, q) for name, q in QUANTILES}


def quantile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default) of sorted values."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def slowest(step_ms: Sequence[float], count: int) -> List[int]:
    """The ``count`` slowest ranks, slowest first (ties: the lower rank first)."""
    return sorted(range(len(step_ms)), key=lambda rank: (-step_ms[rank], rank))[:count]
