"""results.png: one panel per question, one group of bars per (workload, workers), one bar per runner."""

from __future__ import annotations

from pathlib import Path

from bench.peers import PEERS

COLORS = {"single": "tab:gray", "torchrun": "tab:blue", "raytrain": "tab:orange", "orchestrator": "tab:green",
          "orchestrator-log1": "tab:olive", "orchestrator-fp16": "tab:purple", "orchestrator-powersgd": "tab:red",
          "torchrun-fp16": "tab:cyan", "torchrun-powersgd": "tab:pink"}
# (summary key, title, bar label format, reference line): ratios and differences, since absolute
# samples/s differ by 100x between workloads.
PANELS = [
    ("throughput_ratio", "steady throughput vs torchrun's median (higher is better; bars: min-max)", "{:.2f}", 1.0),
    ("overhead_ms", "per-step overhead vs torchrun's median, ms/step (lower is better; bars: min-max)", "{:+.2f}", 0.0),
    ("startup_s", "start-up: shell to first optimizer step, s (lower is better; bars: min-max)", "{:.1f}", None),
]


def chart(summary: list, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    groups = list(dict.fromkeys((s["workload"], s["workers"]) for s in summary))
    runners = [r for r in PEERS if any(s["runner"] == r for s in summary)]
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(max(6, 1.8 * len(groups) + 2), 11), sharex=True)
    for ax, panel in zip(axes, PANELS):
        draw_panel(ax, panel, summary, groups, runners)
    axes[-1].set_xticks(range(len(groups)))
    axes[-1].set_xticklabels([f"{w}\n{n} worker{'s' if n > 1 else ''}" for w, n in groups])
    # Legend from patches: a runner without any result has no bar to take its colour from.
    has_result = {s["runner"] for s in summary if s["samples_per_sec"] is not None}
    handles = [Patch(color=COLORS[r], label=r if r in has_result else f"{r} (no result)") for r in runners]
    fig.legend(handles=handles, loc="upper center", ncol=len(runners), fontsize="small")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_panel(ax, panel: tuple, summary: list, groups: list, runners: list) -> None:
    key, title, label_fmt, reference = panel
    by_key = {(s["workload"], s["workers"], s["runner"]): s for s in summary}
    width = 0.8 / max(1, len(runners))
    for i, runner in enumerate(runners):
        xs, ys, errors = [], [], [[], []]
        for g, (workload, workers) in enumerate(groups):
            s = by_key.get((workload, workers, runner))
            if s and s[key] is not None:
                xs.append(g + (i - (len(runners) - 1) / 2) * width)
                ys.append(s[key])
                errors[0].append(s[key] - s.get(f"{key}_min", s[key]))
                errors[1].append(s.get(f"{key}_max", s[key]) - s[key])
        has_spread = f"{key}_min" in summary[0]
        bars = ax.bar(xs, ys, width, color=COLORS[runner], yerr=errors if has_spread and xs else None,
                      capsize=2, error_kw={"linewidth": 0.8})
        ax.bar_label(bars, labels=[label_fmt.format(y) for y in ys], fontsize=7, rotation=90, padding=2)
    if reference is not None:
        ax.axhline(reference, color="black", linewidth=0.8, alpha=0.6)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.25)  # room for the bar labels
