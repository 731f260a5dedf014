"""Reading a finished run of ``scripts/data_scaling.py`` (TensorBoard, the error) and writing its
report: the markdown page and the chart."""

from __future__ import annotations

import json
import platform
import re
from pathlib import Path
from typing import Optional, Sequence

from bench.data_scaling_plan import PATHS, ScalingRow, markdown_table

WAIT_TAG = re.compile(r"^worker/\d+/data_wait_pct$")


def data_wait_pct(tb_dir: Path) -> Optional[float]:
    """Mean of every worker/<rank>/data_wait_pct point after each rank's first (start-up) one."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values = []
    for events in sorted(tb_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in filter(WAIT_TAG.match, acc.Tags().get("scalars", [])):
            values += [e.value for e in acc.Scalars(tag)[1:]]
    return sum(values) / len(values) if values else None


def error_line(run_dir: Path, output: str, returncode: int) -> str:
    """The run's own error (summary.json), else the last line of its output that names an error."""
    summary = run_dir / "summary.json"
    if summary.exists():
        error = json.loads(summary.read_text()).get("error")
        if error:
            return one_line(error if isinstance(error, str) else json.dumps(error))
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    named = [line for line in lines if re.search(r"error|exception|killed|memory", line, re.I)]
    return one_line((named or lines or [f"exit code {returncode}"])[-1]) + f" (exit code {returncode})"


def one_line(text: str, limit: int = 220) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def chart(rows: Sequence[ScalingRow], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    colors = dict(zip(PATHS, ("tab:green", "tab:orange")))
    for name in PATHS:
        ok = sorted((r for r in rows if r.path == name and r.status == "ok"), key=lambda r: r.gigabytes)
        sizes = [r.gigabytes for r in ok]
        left.plot(sizes, [r.worker_rss_mib for r in ok], "o-", color=colors[name], label=f"{name}: RSS")
        left.plot(sizes, [r.worker_uss_mib for r in ok], "s--", color=colors[name], label=f"{name}: USS")
        right.plot(sizes, [r.driver_rss_mib for r in ok], "o-", color=colors[name], label=f"{name}: driver RSS")
        right.plot(sizes, [r.total_pss_mib for r in ok], "s:", color=colors[name], label=f"{name}: whole job PSS")
        for r in (r for r in rows if r.path == name and r.status != "ok"):
            for ax in (left, right):
                ax.axvline(r.gigabytes, color=colors[name], alpha=0.3, ls="--")
                ax.annotate("failed" if r.status == "failed" else "not run", (r.gigabytes, 0.05),
                            xycoords=("data", "axes fraction"), color=colors[name], rotation=90, fontsize=8)
    left.set_title("peak memory per Ray worker (larger rank)")
    right.set_title("driver and whole job")
    sizes = sorted({r.gigabytes for r in rows})
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [f"{g:g}" for g in sizes])
        ax.set_ylim(bottom=0)  # flat or growing is seen against zero
        ax.set_xlabel("dataset size, GiB of float32 features")
        ax.set_ylabel("MiB")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(rows: Sequence[ScalingRow], path: Path, command: str, args) -> None:
    import ray
    import torch

    text = f"""# Data larger than memory: peak memory against dataset size

Command: `{command.strip()}` (2 workers, MLP 784-128-64-10, batch 64 per worker, {args.steps} steps per run,
validation off, object store capped at {args.object_store_mb:g} MiB with `RAY_DEFAULT_OBJECT_STORE_MAX_MEMORY_BYTES`).
Machine: 2 shared CPU cores (other engineers' jobs ran at the same time: samples/s are noisy), Python
{platform.python_version()}, torch {torch.__version__}, ray {ray.__version__}. One run per cell.

- **streaming (data=parquet)**: uncompressed Parquet files of ~64 MiB (a float32 list column `x` of 784
  values, `label`), rank r of 2 reads files r, r+2, ... a row group (4096 rows) at a time.
- **shared memory (data=mnist)**: the same rows as MNIST IDX files (uint8 pixels on disk, 1/4 of the
  size); the driver loads them as float32 (/255, exactly the Parquet values) and puts them in the object store.
- *data (GiB)*: the float32 features the model trains on. Memory is sampled every {args.interval:g} s with psutil:
  per worker the `ray::Worker` actor process (and any children), RSS (includes the shared object-store
  pages it touched) and USS (its private pages); the driver's RSS; the whole job's PSS (every process of
  the run, shared pages counted once); the Ray temp dir on disk (spilled and fallback-allocated objects).
- *data wait*: mean of `worker/<rank>/data_wait_pct` (TensorBoard) over the run; *samples/s*: summary.json's
  steady samples/s (both ranks).

{markdown_table(rows)}

![peak memory against dataset size](data_scaling.png)
"""
    path.write_text(text)
