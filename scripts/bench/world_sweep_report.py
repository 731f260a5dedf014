"""World-size sweep: the markdown table (one row per world size) and the growth line per metric. Pure."""

from __future__ import annotations

from typing import Dict, List, Optional

from bench.world_sweep_plan import PHASES, growth

# (row key, column heading, format); the metrics the chart and the growth lines cover come first.
METRICS = [
    ("launch_to_first_step_s", "launch -> first step, s", "{:.1f}"),
    ("driver_cpu_startup_s", "driver CPU to first step, s", "{:.2f}"),
    ("driver_cpu_train_pct", "driver CPU while training, %", "{:.1f}"),
    ("driver_peak_rss_mb", "driver peak RSS, MB", "{:.0f}"),
    ("ray_head_cpu_pct", "Ray head (gcs, raylet, agents) CPU over the run, %", "{:.0f}"),
    ("inbound_bytes_per_s", "records to driver, B/s", "{:.0f}"),
    ("heartbeat_bytes_per_s", "heartbeats, B/s (est.)", "{:.0f}"),
    ("kill_to_detected_s", "SIGKILL -> detected, s", "{:.2f}"),
    ("kill_to_first_step_s", "SIGKILL -> first step after restart, s", "{:.1f}"),
]
EXTRA = [("status", "status", "{}"), ("ray_head_cpu_s", "Ray head CPU whole run, s", "{:.1f}"),
         ("bytes_per_record", "B per record", "{:.0f}"), ("run_sink_cpu_s", "RunSink actor CPU, s", "{:.1f}"), ("steps_per_s", "steps/s", "{:.1f}"), ("steps_lost", "steps lost", "{}"),
         ("driver_cpu_total_s", "driver CPU whole run, s", "{:.1f}"), ("wall_s", "wall, s", "{:.0f}")]
PHASE_COLUMNS = [(p, p[:-2], "{:.2f}") for p in PHASES]


def cell(value, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def transposed_table(rows: List[Dict], columns) -> List[str]:
    """Metrics down, world sizes across: ten sizes of columns stay readable, twenty metrics would not."""
    head = "| metric | " + " | ".join(f"{r['world_size']} rank{'s' if r['world_size'] > 1 else ''}" for r in rows) + " |"
    lines = [head, "|---|" + "---:|" * len(rows)]
    for key, title, fmt in columns:
        lines.append(f"| {title} | " + " | ".join(cell(r.get(key), fmt) for r in rows) + " |")
    return lines


def growth_lines(rows: List[Dict], columns=METRICS) -> List[str]:
    sizes = [r["world_size"] for r in rows]
    lines = []
    for key, title, _ in columns:
        slope, meaning = growth(sizes, [r.get(key) for r in rows])
        slope_text = f"{slope:+.2f}" if slope is not None else "-"
        lines.append(f"| {title} | {slope_text} | {meaning} |")
    return ["| metric | log-log slope | best-fitting shape |", "|---|---:|---|"] + lines


def markdown(rows: List[Dict], header: str, notes: Optional[List[str]] = None) -> str:
    parts = [header, "", "## Driver-side costs", ""] + transposed_table(rows, METRICS + EXTRA)
    parts += ["", "## Start-up phases (seconds, from the run's summary timing)", ""]
    parts += transposed_table(rows, PHASE_COLUMNS)
    parts += ["", "## Growth over the sizes measured", "",
              "Shape: flat when all values are within 25% of the median or the slope is under 0.15 either way, "
              "falls when it goes down, else the best least-squares fit of "
              "a + b*f(n), f = log2 n, n or n^2. Slope: of log(value) against log(world size) (1 = linear, "
              "a constant part pulls it lower).", ""] + growth_lines(rows)
    for note in notes or []:
        parts += ["", note]
    return "\n".join(parts) + "\n"
