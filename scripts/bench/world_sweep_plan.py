"""World-size sweep, the pure part: each run's command line, one table row from what a run left behind
(its summary.json and the driver's sampled CPU/memory), how a metric grows with the world size, the table.

No processes here: scripts/bench/world_sweep_probe.py runs and watches a job, scripts/world_sweep.py
wires the two together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

SIZES = (1, 2, 4, 8, 16, 32)
BATCH_PER_RANK = 16
LOG_EVERY = 5
CHECKPOINT_EVERY = 50
# Ray's logical CPUs, the same for every size: enough for the largest gang, so only the world size
# varies (Ray sizes its pools by num_cpus). scaling.cpus_per_worker is an integer >= 1, so "fractional
# CPUs per worker" is done the other way round: 32 logical CPUs offered on a 2-core machine.
LOGICAL_CPUS = 32
# The start-up phases a run's summary timing holds, in the order they happen.
PHASES = ("ray_start_s", "data_load_s", "data_share_s", "placement_s", "actor_start_s", "process_group_s",
          "worker_build_s", "first_batch_s", "first_step_s")


def overrides(world_size: int, run_dir: str) -> List[str]:
    """A tiny MLP on tiny synthetic data; steps without end (the sweep stops the run itself, after the
    recovery it measures), a checkpoint every CHECKPOINT_EVERY steps to resume from."""
    return ["model=mlp", "model.hidden_sizes=[16]", "data=synthetic_classification",
            f"data.batch_size={BATCH_PER_RANK}", f"scaling.num_workers={world_size}",
            f"cluster.num_cpus={max(LOGICAL_CPUS, world_size)}", "trainer.max_steps=10000000",
            "trainer.max_epochs=100000", f"trainer.log_every_n_steps={LOG_EVERY}",
            f"checkpoint.every_n_steps={CHECKPOINT_EVERY}", "checkpoint.every_epoch=false",
            "failure.max_failures=2", f"hydra.run.dir={run_dir}"]


def timeout_for(world_size: int, base_s: float) -> float:
    """On 2 cores every rank is another Python process importing torch: allow more time per rank."""
    return base_s + 20.0 * world_size


@dataclass
class Observed:
    """What the sweep saw from outside the run (wall clock, time.time)."""
    world_size: int
    launch_unix: float
    exit_code: Optional[int]            # None: still running at the timeout (then stopped)
    timed_out: bool
    kill_unix: Optional[float] = None
    killed_pid: Optional[int] = None
    # (unix time, driver CPU seconds, driver peak RSS bytes), sampled while the run went
    driver_samples: List[Tuple[float, float, int]] = field(default_factory=list)
    ray_head_cpu_s: float = 0.0         # gcs_server, raylet and Ray's other helper processes of this run
    run_sink_cpu_s: float = 0.0         # the run's RunSink actor (on the driver's node)
    ray_head_by_process: Dict[str, float] = field(default_factory=dict)   # CPU seconds by process name
    end_unix: Optional[float] = None     # when the run had exited (or was stopped)
    note: str = ""


def value_at(samples: Sequence[Tuple[float, float, int]], when: Optional[float]) -> Optional[float]:
    """The driver's CPU seconds at `when`: the last sample taken at or before it."""
    if when is None:
        return None
    before = [cpu for t, cpu, _ in samples if t <= when]
    return before[-1] if before else None


def row(obs: Observed, summary: Optional[dict], heartbeat_bytes: int) -> Dict:
    """One line of the table. Missing pieces (a run that timed out, never recovered) stay None."""
    summary = summary or {}
    timing = summary.get("timing", {})
    first_step = timing.get("first_step_unix")
    r: Dict = {"world_size": obs.world_size, "status": status_of(obs, summary), "note": obs.note}
    r["launch_to_first_step_s"] = first_step - obs.launch_unix if first_step else None
    r["command_to_first_step_s"] = timing.get("command_to_first_step_s")
    r.update({phase: timing.get(phase) for phase in PHASES})
    r.update(driver_costs(obs, first_step))
    r.update(traffic(summary, obs.world_size, heartbeat_bytes))
    r.update(recovery(obs, summary))
    r["steps_per_s"] = steps_per_s(obs, summary, first_step)
    r["wall_s"] = summary.get("wall_time_s")
    return r


def steps_per_s(obs: Observed, summary: dict, first_step: Optional[float]) -> Optional[float]:
    """Training speed before the kill: the step the failure was seen at over the time since the first step."""
    restarts = summary.get("restarts") or []
    if not restarts or obs.kill_unix is None or not first_step or obs.kill_unix <= first_step:
        return None
    return restarts[0]["step"] / (obs.kill_unix - first_step)


def status_of(obs: Observed, summary: dict) -> str:
    if obs.timed_out:
        return "timeout"
    return summary.get("status", f"no summary (exit {obs.exit_code})")


def driver_costs(obs: Observed, first_step: Optional[float]) -> Dict:
    """CPU until the first step, CPU share while training (first step to the kill), whole-run CPU, peak RSS."""
    samples = obs.driver_samples
    total = samples[-1][1] if samples else None
    at_first = value_at(samples, first_step)
    at_kill = value_at(samples, obs.kill_unix)
    train_pct = None
    if at_first is not None and at_kill is not None and obs.kill_unix > first_step:
        train_pct = 100.0 * (at_kill - at_first) / (obs.kill_unix - first_step)
    peak = max((rss for _, _, rss in samples), default=None)
    return {"driver_cpu_startup_s": at_first, "driver_cpu_train_pct": train_pct, "driver_cpu_total_s": total,
            "driver_peak_rss_mb": peak / 2**20 if peak else None, "ray_head_cpu_s": obs.ray_head_cpu_s or None,
            "ray_head_cpu_pct": (100.0 * obs.ray_head_cpu_s / (obs.end_unix - obs.launch_unix)
                                 if obs.ray_head_cpu_s and obs.end_unix else None),
            "run_sink_cpu_s": obs.run_sink_cpu_s or None,
            "ray_head_by_process": {name: round(cpu, 1) for name, cpu in obs.ray_head_by_process.items()}}


def traffic(summary: dict, world_size: int, heartbeat_bytes: int) -> Dict:
    """Record bytes reaching the driver per second of training (the recovery gap left out) and per record;
    the heartbeat polls (one per rank per second, not counted by the run) estimated from their size."""
    inbound = summary.get("driver_inbound") or {}
    span = None
    if inbound.get("first_unix") and inbound.get("last_unix"):
        gap = sum(r.get("recovery_s") or 0.0 for r in summary.get("restarts", []))
        span = inbound["last_unix"] - inbound["first_unix"] - gap
    size, count = inbound.get("bytes"), inbound.get("records")
    return {"inbound_bytes_per_s": size / span if size and span and span > 0 else None,
            "bytes_per_record": size / count if size and count else None,

            "heartbeat_bytes_per_s": heartbeat_bytes * world_size}


def recovery(obs: Observed, summary: dict) -> Dict:
    """From our SIGKILL to the run noticing it, and to the first step after the restart."""
    restarts = summary.get("restarts") or []
    out = {"kill_to_detected_s": None, "kill_to_first_step_s": None, "steps_lost": None}
    if obs.kill_unix is None or not restarts:
        return out
    first = restarts[0]
    out["kill_to_detected_s"] = first["detected_unix"] - obs.kill_unix
    if first.get("recovery_s") is not None:
        out["kill_to_first_step_s"] = first["detected_unix"] + first["recovery_s"] - obs.kill_unix
    out["steps_lost"] = first.get("steps_lost")
    return out


def growth(sizes: Sequence[int], values: Sequence[Optional[float]]) -> Tuple[Optional[float], str]:
    """(slope of log(value) against log(world size), the shape that fits best).

    The shape: "flat" when every value is within FLAT_SPREAD of the median or the slope is under
    FLAT_SLOPE either way, "falls" when it goes down; otherwise the best
    least-squares fit of a + b*f(n) for f = log2 n, n, n^2 ("logarithmic", "linear", "quadratic").
    The slope is the growth over the sizes measured, a constant part included (1 would be linear).
    """
    points = [(n, v) for n, v in zip(sizes, values) if v is not None and v > 0]
    if len(points) < 3:
        return None, "too few points"
    slope = fit([math.log(n) for n, _ in points], [math.log(v) for _, v in points])[0]
    ys = sorted(v for _, v in points)
    median = ys[len(ys) // 2]
    if ys[-1] - ys[0] <= FLAT_SPREAD * median or abs(slope) < FLAT_SLOPE:
        return slope, "flat"
    if slope < 0:
        return slope, "falls"
    shapes = {"logarithmic": math.log2, "linear": float, "quadratic": lambda n: float(n) ** 2}
    errors = {name: fit([f(n) for n, _ in points], [v for _, v in points])[1] for name, f in shapes.items()}
    return slope, min(errors, key=errors.get)


FLAT_SPREAD = 0.25
FLAT_SLOPE = 0.15   # under a 10% rise per doubling of the ranks


def fit(xs: Sequence[float], ys: Sequence[float]) -> Tuple[float, float]:
    """Least squares y = a + b*x: (b, sum of squared residuals)."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    a = my - b * mx
    return b, sum((y - a - b * x) ** 2 for x, y in zip(xs, ys))
