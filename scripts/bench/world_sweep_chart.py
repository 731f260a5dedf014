"""world_sweep.png: one panel per metric against the world size (log2 x axis), plus one for the start-up phases."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List

from bench.world_sweep_plan import PHASES
from bench.world_sweep_report import METRICS


def chart(rows: List[Dict], path: Path, subtitle: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = len(METRICS) + 1
    cols = 3
    fig, axes = plt.subplots(math.ceil(panels / cols), cols, figsize=(15, 3.2 * math.ceil(panels / cols)))
    axes = list(axes.flat)
    sizes = [r["world_size"] for r in rows]
    for ax, (key, title, _) in zip(axes, METRICS):
        points = [(n, r.get(key)) for n, r in zip(sizes, rows) if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker="o")
        failed = [n for n, r in zip(sizes, rows) if r["status"] == "timeout"]
        for n in failed:
            ax.axvline(n, color="tab:red", linestyle=":", label="timeout")
        style(ax, title, sizes)
    phase_panel(axes[len(METRICS)], rows, sizes)
    for ax in axes[panels:]:
        ax.set_visible(False)
    fig.suptitle(f"World size sweep (tiny MLP, 2-core shared machine). {subtitle}", fontsize="medium")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def phase_panel(ax, rows: List[Dict], sizes: List[int]) -> None:
    for phase in PHASES:
        points = [(n, r.get(phase)) for n, r in zip(sizes, rows) if r.get(phase) is not None]
        if points and max(v for _, v in points) >= 0.05:  # the phases that are ever worth a line
            ax.plot(*zip(*points), marker=".", label=phase[:-2])
    ax.legend(fontsize="x-small")
    style(ax, "start-up phases, s", sizes)


def style(ax, title: str, sizes: List[int]) -> None:
    ax.set_title(title, fontsize="small")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(n) for n in sizes])
    ax.set_xlabel("world size (ranks)", fontsize="small")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
