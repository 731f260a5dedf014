"""The markdown of results.md: the throughput and start-up table and the memory check's table."""

from __future__ import annotations

from bench.measure import PSS_RSS_GROWTH
from bench.workloads import LR, MOMENTUM

HEADER = ("| workload | workers | runner | start-up from shell (s) | samples/s | ms/step "
          "| overhead vs torchrun (ms/step) | throughput vs torchrun | start-up vs torchrun "
          "| peak mem (MiB) | wall (s) | data wait (% of step) | reps ok | note |")


def fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def with_spread(s: dict, key: str, spec: str) -> str:
    """`median (min-max)`, or the median alone after one repetition."""
    median, low, high = s[key], s[f"{key}_min"], s[f"{key}_max"]
    if median is None or low == high:
        return fmt(median, spec)
    return f"{format(median, spec)} ({format(low, spec)}-{format(high, spec)})"


def table_row(s: dict) -> str:
    return (f"| {s['workload']} | {s['workers']} | {s['runner']} | {with_spread(s, 'startup_s', '.2f')} "
            f"| {with_spread(s, 'samples_per_sec', ',.0f')} | {with_spread(s, 'ms_per_step', '.2f')} "
            f"| {fmt(s['overhead_ms'], '+.2f')} | {fmt(s['throughput_ratio'], '.2f')} "
            f"| {fmt(s['startup_ratio'], '.2f')} | {fmt(s['peak_mem_mb'], ',.0f')} | {fmt(s['wall_s'], '.1f')} "
            f"| {fmt(s['data_wait_pct'], '.2f')} | {s['reps_ok']}/{s['reps']} | {s['note'].replace('|', '/')} |")


def markdown_table(summary: list, meta: dict) -> str:
    lines = [
        f"# Benchmark {meta['date']}",
        "",
        f"{meta['reps']} interleaved rep(s), {meta['steps']} steps ({meta['warmup']} warm-up) for mlp, a tenth "
        f"of that for cnn and wide_mlp, {meta['num_samples']} synthetic samples, SGD lr {LR} momentum {MOMENTUM}, "
        f"1 thread per worker; {meta['cpu_count']} CPUs, torch {meta['torch']}, ray {meta['ray']}, "
        f"Python {meta['python']}. Median (min-max) over reps. "
        "Start-up: from the driver's clock just before it spawned the command (as a shell would) to rank 0's "
        "first optimizer step. Throughput: global samples/s after warm-up; ms/step from it. "
        "Overhead: median ms/step minus torchrun's. Memory: peak summed PSS of the command and its descendants.",
        "",
        HEADER,
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        *[table_row(s) for s in summary],
        "",
        "Notes:",
        "- `torchrun` is the plainest DDP loop: batches made once and cycled, nothing per step but "
        "zero_grad, forward, loss, backward, step. `single` and `raytrain` run the very same loop.",
        "- `single` is one process without DDP; `torchrun` always wraps the model in DDP, even with "
        "1 worker, while Ray Train's `prepare_model` skips DDP for 1 worker.",
        "- `orchestrator` is `python -m orchestrator.train` with the workload, SGD, validation and epoch "
        "checkpoints off, every other setting at its default (logging, health checks, cosine schedule); "
        "`orchestrator-log1` also reduces and logs metrics every step. Its samples/s and first-step time "
        "come from its summary.json; its warm-up may differ from the other runners' first "
        f"{meta['warmup']} steps. raw.json's `own_clock_startup_s` is the same first step on the "
        "orchestrator's own clock (summary.json's `command_to_first_step_s`); start-up minus it is what "
        "passes before that clock starts.",
        "- A `raytrain` row is skipped, with a note, when `ray[train]` (the `bench` extra) is not installed.",
        "- Peak memory: RSS is sampled every interval and PSS re-read whenever the tree's RSS grew "
        f"by over {PSS_RSS_GROWTH:.0%} (reading PSS slows the processes it reads).",
    ]
    return "\n".join(lines) + "\n"


def memory_table(rows: list, gigabytes: float) -> str:
    if not rows:
        return ""
    lines = ["", f"## Memory: 2 workers, one {gigabytes:g} GB dataset", "",
             "| runner | dataset (MiB) | peak, tiny dataset (MiB) | peak, large dataset (MiB) "
             "| memory the data costs (MiB) | copies of the dataset | note |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['runner']} | {r['dataset_mb']:,.0f} | {fmt(r['peak_tiny_mb'], ',.0f')} "
                     f"| {fmt(r['peak_large_mb'], ',.0f')} | {fmt(r['data_mb'], ',.0f')} | {fmt(r['copies'], '.2f')} "
                     f"| {r['note'].replace('|', '/')} |")
    lines += ["", "Peak summed PSS of every process the command starts (shared pages are split among the "
                  "processes that map them, so the object store's copy counts once). The data's cost is the "
                  "peak on the large dataset minus the peak of the same run on a tiny one."]
    return "\n".join(lines) + "\n"
