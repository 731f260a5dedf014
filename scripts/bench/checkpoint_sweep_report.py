"""checkpoint_sweep.md (the table) and checkpoint_sweep.png (blocked time, write time and peak memory
against the state size, before and after)."""

from __future__ import annotations

from pathlib import Path
from typing import List

COLUMNS = [  # (row key, header, format)
    ("checkpoint_file_mb", "file (MiB)", "{:,.0f}"),
    ("checkpoints", "ckpts", "{}"),
    ("blocked_ms_median", "blocked ms (median)", "{:,.0f}"),
    ("write_ms_median", "write ms (median)", "{:,.0f}"),
    ("rank0_peak_rss_mb", "rank 0 peak RSS (MiB)", "{:,.0f}"),
    ("rank1_peak_rss_mb", "rank 1 peak RSS (MiB)", "{:,.0f}"),
    ("driver_peak_rss_mb", "driver peak RSS (MiB)", "{:,.0f}"),
    ("run_sink_peak_rss_mb", "run sink peak RSS (MiB)", "{:,.0f}"),
    ("wall_s", "wall (s)", "{:,.1f}"),
]
MODE_TEXT = {"before": "before: transport=driver, sync", "after": "after: transport=direct, async"}


def cell(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def markdown(rows: List[dict], header: str, notes: List[str]) -> str:
    lines = [header, "",
             "| state (MiB) | mode | " + " | ".join(h for _, h, _ in COLUMNS) + " | exit |",
             "|---:|---|" + "---:|" * len(COLUMNS) + "---:|"]
    for r in rows:
        cells = [cell(r.get(key), fmt) for key, _, fmt in COLUMNS]
        lines.append(f"| {r['state_mb']:,.0f} | {MODE_TEXT[r['mode']]} | " + " | ".join(cells) + f" | {r['exit_code']} |")
    lines += ["", "Every checkpoint's blocked / write ms, in step order:", ""]
    lines += [f"- {r['state_mb']:,.0f} MiB {r['mode']}: blocked {fmt_list(r['blocked_ms'])}; write {fmt_list(r['write_ms'])}"
              for r in rows]
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def fmt_list(values: List[float]) -> str:
    return ", ".join(f"{v:,.0f}" for v in values) or "-"


PANELS = [("blocked_ms_median", "training blocked per checkpoint (ms, median)"),
          ("write_ms_median", "write time per checkpoint (ms, median)"),
          ("rank0_peak_rss_mb", "rank 0 peak RSS (MiB)"),
          ("driver_peak_rss_mb", "driver process peak RSS (MiB)")]


def chart(rows: List[dict], path: Path, subtitle: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, (key, name) in zip(axes.flat, PANELS):
        for mode, style in (("before", "o--"), ("after", "s-")):
            points = [(r["state_mb"], r[key]) for r in rows if r["mode"] == mode and r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), style, label=MODE_TEXT[mode])
        ax.set_xscale("log")
        ax.set_yscale("log" if key.endswith("_ms_median") else "linear")
        ax.set_xlabel("parameters + Adam state (MiB)")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Checkpoint sweep, 2 workers ({subtitle})", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
