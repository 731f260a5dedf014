#!/usr/bin/env python
"""Compare ways of running the same data-parallel PyTorch training on CPU, side by side.

Runners (each one launched as its own command, measured from outside the same way):
  single        one process, one thread, no DDP: the per-core compute floor
  torchrun      a plain DDP script under `torchrun --standalone` (gloo): the baseline for the ratios
  raytrain      Ray Train v2 TorchTrainer on a fresh local Ray started inside the command
  orchestrator  this project's `python -m orchestrator.train`

Per run the harness measures the time from spawning the command to the moment rank 0 finished
its first optimizer step (the runner prints that unix time), the steady samples/s rank 0
measured after its warm-up steps, the peak summed PSS of the command and all its descendants
(sampled every --mem-interval s) and the wall time. Repetitions are interleaved (rep 1 of every
configuration, then rep 2, ...) so a slow spell of the machine does not hit one runner only;
the table shows medians.

    python scripts/benchmark.py --reps 3 --steps 200
    python scripts/benchmark.py --quick                      # smoke test: 1 rep, 20 steps, mlp only
    python scripts/benchmark.py --runners torchrun,raytrain --workloads wide_mlp --workers 2

Writes results.md (table), results.png (chart), raw.json (every rep) and logs/ under --out
(default scripts/results/<date>/).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(0, str(ROOT))

from bench.common import RESULT_PREFIX, THROUGHPUT_WORKLOADS, WORKLOADS, steps_for  # noqa: E402

RUNNERS = ["single", "torchrun", "raytrain", "orchestrator", "orchestrator-log1"]
# The orchestrator reduces and reports metrics every N steps: 100 for its throughput row, and every
# step for the "-log1" row, which measures what logging every step costs.
ORCHESTRATOR_LOG_EVERY = {"orchestrator": 100, "orchestrator-log1": 1}
BASELINE = "torchrun"
SKIP_PREFIX = "BENCH_SKIP "
# Re-read the (costly) PSS when the process tree's RSS has grown by more than this fraction.
PSS_RSS_GROWTH = 0.01


# ----------------------------------------------------------------------------- commands
def runner_command(runner: str, workload: str, workers: int, args, run_dir: Path) -> list:
    """The command line for one run. Every runner gets the same workload, steps and data size."""
    py = sys.executable
    steps, warmup = steps_for(workload, args.steps, args.warmup)
    common = ["--workload", workload, "--steps", str(steps), "--warmup", str(warmup),
              "--num-samples", str(args.num_samples)]
    if runner == "single":
        return [py, str(SCRIPTS / "bench" / "single_runner.py"), *common]
    if runner == "torchrun":
        # `python -m torch.distributed.run` is the torchrun entry point, from the same venv.
        return [py, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={workers}",
                str(SCRIPTS / "bench" / "torchrun_runner.py"), *common]
    if runner == "raytrain":
        return [py, str(SCRIPTS / "bench" / "raytrain_runner.py"), *common, "--workers", str(workers),
                "--storage-path", str(run_dir)]
    if runner in ORCHESTRATOR_LOG_EVERY:
        return [py, "-m", "orchestrator.train", *orchestrator_overrides(workload, workers, args, run_dir,
                                                                        ORCHESTRATOR_LOG_EVERY[runner])]
    raise ValueError(runner)


def orchestrator_overrides(workload: str, workers: int, args, run_dir: Path, log_every: int) -> list:
    spec = WORKLOADS[workload]
    shape = spec["shape"]
    num_features = 1
    for d in shape:
        num_features *= d
    batch = spec["batch"]
    # Enough epochs that trainer.max_steps, not the epoch count, ends the run.
    steps_per_epoch = max(1, args.num_samples // (batch * workers))
    steps, _ = steps_for(workload, args.steps, args.warmup)
    max_epochs = -(-steps // steps_per_epoch) + 1
    overrides = [
        f"model={spec['model']}",
        "data=synthetic_classification",
        f"data.num_features={num_features}",
        "data.sample_shape=[" + ",".join(map(str, shape)) + "]",
        "data.num_classes=10",
        f"data.num_samples={args.num_samples}",
        f"data.batch_size={batch}",
        "data.val_fraction=0.0",
        f"trainer.num_workers={workers}",
        f"trainer.max_steps={steps}",
        f"trainer.max_epochs={max_epochs}",
        f"trainer.log_every_n_steps={log_every}",
        "checkpoint.every_epoch=false",
        "optimizer=adam",
        "scheduler=constant",
        f"hydra.run.dir={run_dir}",
    ]
    if "hidden_sizes" in spec["kwargs"]:
        overrides.append("model.hidden_sizes=[" + ",".join(map(str, spec["kwargs"]["hidden_sizes"])) + "]")
    return overrides


def child_env(ray_tmp: Path) -> dict:
    env = dict(os.environ)
    # Each run's temp files go to its own temp dir, removed after the run: Ray's session files and
    # torchrun's torchelastic_* dirs would otherwise stay behind.
    env["RAY_TMPDIR"] = env["TMPDIR"] = str(ray_tmp)
    # One thread per worker everywhere; the bench package and `models` importable in every process
    # (Ray's workers inherit this environment through the raylet).
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(SCRIPTS), env.get("PYTHONPATH")]))
    # Never let a runner join someone else's Ray cluster, nor phone home (this machine is offline).
    env.pop("RAY_ADDRESS", None)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


# ----------------------------------------------------------------------------- measuring one run
def safe_children(proc: psutil.Process) -> list:
    try:
        return proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def tree_rss(procs: list) -> int:
    """Summed RSS in bytes: cheap (/proc/PID/statm), does not disturb the processes."""
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            pass
    return total


def tree_pss(procs: list) -> int:
    """Summed PSS in bytes (RSS where PSS cannot be read).

    PSS splits shared pages among the processes sharing them, so the sum does not count
    torch's shared libraries once per worker as RSS would.
    """
    total = 0
    for p in procs:
        try:
            try:
                total += p.memory_full_info().pss
            except (AttributeError, psutil.AccessDenied):
                total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return total


def run_measured(cmd: list, log_path: Path, timeout: float, mem_interval: float, ray_tmp: Path) -> dict:
    """Spawn cmd, sample its process tree's memory until it exits, return timings and output."""
    seen: dict = {}
    peak = {"bytes": None, "samples": 0, "pss_reads": 0}
    with open(log_path, "w") as log:
        start_unix = time.time()  # just before spawning: the start-up clock starts here
        proc = psutil.Popen(cmd, cwd=ROOT, env=child_env(ray_tmp), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # own process group, so a timeout can end all of it
        stop = threading.Event()
        sampler = threading.Thread(target=sample_memory, args=(proc, mem_interval, stop, seen, peak), daemon=True)
        if mem_interval > 0:
            sampler.start()
        try:
            proc.wait(timeout=timeout)
            timed_out = False
        except psutil.TimeoutExpired:
            timed_out = True
        wall = time.time() - start_unix
        stop.set()
        if sampler.is_alive():
            sampler.join()
        if timed_out:
            end_processes([proc, *safe_children(proc), *seen.values()])
        returncode = proc.wait()
    # Whatever the command left behind is ours to end: descendants seen while sampling, and the Ray
    # processes of its own RAY_TMPDIR (daemonised, they may never have been seen; they write there until gone).
    found = {p.pid: p for p in [*seen.values(), *processes_using(ray_tmp)]}
    leftovers = [p for p in found.values() if p.pid != proc.pid and p.is_running()]
    if leftovers:
        psutil.wait_procs(leftovers, timeout=10)
        end_processes(leftovers)
    return {"start_unix": start_unix, "returncode": returncode, "timed_out": timed_out, "wall_s": wall,
            "peak_mem_bytes": peak["bytes"], "mem_samples": peak["samples"],
            "pss_reads": peak["pss_reads"],
            "output": log_path.read_text(errors="replace")}


def sample_memory(proc: psutil.Process, interval: float, stop: threading.Event, seen: dict, peak: dict) -> None:
    """Sampler thread: every `interval` s, the summed PSS of proc and all its descendants; keep the max.

    Reading PSS is not cheap: the kernel walks every mapping of the process under its memory-map
    lock (~5 ms per torch process here, ~40 ms for a whole Ray Train tree). Read every 0.1 s on
    2 cores, it lowered the measured throughput by ~10% in interleaved A/B runs. So every sample
    reads the cheap RSS, and PSS is read again only when the tree's RSS has grown by more than
    PSS_RSS_GROWTH since the last PSS read: often during start-up, rarely once the workers'
    memory is steady. PSS <= RSS and they move together, so the peak is still caught (the A/B
    runs gave the same peaks either way, and throughput as with no sampling at all).
    The thread also runs at nice 19 (Linux niceness is per thread; the spawned command keeps its).
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass
    rss_at_last_pss = 0
    while not stop.is_set():
        procs = [proc, *safe_children(proc)]
        for p in procs:
            seen.setdefault(p.pid, p)
        rss = tree_rss(procs)
        peak["samples"] += 1
        if rss > rss_at_last_pss * (1 + PSS_RSS_GROWTH):
            rss_at_last_pss = rss
            peak["bytes"] = max(peak["bytes"] or 0, tree_pss(procs))
            peak["pss_reads"] += 1
        stop.wait(interval)


def end_processes(procs: list) -> None:
    """Terminate, then kill, the given processes (only those this harness spawned or their descendants)."""
    alive = [p for p in procs if p.is_running()]  # is_running also guards against PID reuse
    for p in alive:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(alive, timeout=5)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def processes_using(ray_tmp: Path) -> list:
    """The Ray processes a run started: they carry its own RAY_TMPDIR (in their command line or environment)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if str(ray_tmp) in " ".join(proc.info["cmdline"] or []) or proc.environ().get("RAY_TMPDIR") == str(ray_tmp):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def tagged_json(output: str, prefix: str):
    """The last line's JSON after `prefix` (Ray prefixes worker lines, so search within lines)."""
    found = None
    for line in output.splitlines():
        if prefix in line:
            found = json.loads(line.split(prefix, 1)[1])
    return found


def last_lines(text: str, n: int = 3) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:])[-300:]


def run_one(runner: str, workload: str, workers: int, rep: int, args, logs: Path) -> dict:
    name = f"{runner}_{workload}_w{workers}_r{rep}_n{args.num_samples}"
    row = {"runner": runner, "workload": workload, "workers": workers, "rep": rep,
           "status": "ok", "note": "", "log": str(logs / f"{name}.log")}
    # Scratch space for the run (Hydra run dir, Ray Train storage, Ray's session files), removed even if
    # the run is ended. Ray's gets a short path of its own (its socket paths must stay under 108 bytes).
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench_{runner}_"))
    ray_tmp = Path(tempfile.mkdtemp(dir=args.ray_tmp_root))
    try:
        cmd = runner_command(runner, workload, workers, args, run_dir)
        row["cmd"] = cmd
        m = run_measured(cmd, logs / f"{name}.log", args.timeout, args.mem_interval, ray_tmp)
        result = parse_result(runner, m, run_dir, logs / f"{name}.summary.json")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)

    peak = m["peak_mem_bytes"]
    row.update(start_unix=m["start_unix"], wall_s=m["wall_s"], peak_mem_mb=None if peak is None else peak / 2**20,
               mem_samples=m["mem_samples"], pss_reads=m["pss_reads"], returncode=m["returncode"])
    if isinstance(result, tuple):  # (status, why there is no result)
        row["status"], row["note"] = result
        return row
    row.update(startup_s=result["first_step_unix"] - m["start_unix"],
               samples_per_sec=result["samples_per_sec"], data_wait_pct=result.get("data_wait_pct"),
               result=result)
    return row


def parse_result(runner: str, m: dict, run_dir, summary_copy: Path):
    """The runner's result dict, or (status, reason) when there is none."""
    if m["timed_out"]:
        return "failed", f"timed out after {m['wall_s']:.0f} s"
    if runner in ORCHESTRATOR_LOG_EVERY:
        summary = run_dir / "summary.json"
        if m["returncode"] != 0 or not summary.exists():
            # The orchestrator may not be there yet: its row says so instead of failing the benchmark.
            return "skipped", f"not available (exit {m['returncode']}: {last_lines(m['output'], 1)})"
        shutil.copy(summary, summary_copy)
        try:
            timing = json.loads(summary.read_text())["timing"]
            return {"first_step_unix": float(timing["first_step_unix"]),
                    "samples_per_sec": float(timing["steady_samples_per_sec"]),
                    # the slowest rank's data wait, in percent of its step time
                    "data_wait_pct": timing.get("data_pct")}
        except (ValueError, KeyError, TypeError) as exc:
            return "failed", f"summary.json has no usable timing: {exc!r}"
    skip = tagged_json(m["output"], SKIP_PREFIX)
    if skip:
        return "skipped", skip["reason"]
    result = tagged_json(m["output"], RESULT_PREFIX)
    if m["returncode"] != 0 or result is None:
        return "failed", f"exit {m['returncode']}: {last_lines(m['output'])}"
    return result


# ----------------------------------------------------------------------------- summarising
def summarise(rows: list) -> list:
    """Medians per (workload, workers, runner), plus ratios to torchrun's medians."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["workload"], r["workers"], r["runner"]), []).append(r)
    summary = []
    for (workload, workers, runner), rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok"]
        s = {"workload": workload, "workers": workers, "runner": runner, "reps_ok": len(ok), "reps": len(rs),
             "note": "; ".join(sorted({r["note"] for r in rs if r["note"]}))}
        for key in ("startup_s", "samples_per_sec", "peak_mem_mb", "wall_s", "data_wait_pct"):
            values = [r.get(key) for r in ok if r.get(key) is not None]
            s[key] = statistics.median(values) if values else None
        summary.append(s)
    base = {(s["workload"], s["workers"]): s for s in summary if s["runner"] == BASELINE}
    for s in summary:
        b = base.get((s["workload"], s["workers"]))
        s["throughput_ratio"] = ratio(s["samples_per_sec"], b and b["samples_per_sec"])
        s["startup_ratio"] = ratio(s["startup_s"], b and b["startup_s"])
    order = {name: i for i, name in enumerate(RUNNERS)}
    wl_order = {name: i for i, name in enumerate(WORKLOADS)}
    summary.sort(key=lambda s: (wl_order[s["workload"]], s["workers"], order[s["runner"]]))
    return summary


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def markdown_table(summary: list, meta: dict) -> str:
    lines = [
        f"# Benchmark {meta['date']}",
        "",
        f"{meta['reps']} rep(s), {meta['steps']} steps ({meta['warmup']} warm-up) for mlp, a tenth of that "
        "for cnn and wide_mlp, "
        f"{meta['num_samples']} synthetic samples, Adam lr 1e-3, 1 thread per worker; "
        f"{meta['cpu_count']} CPUs, torch {meta['torch']}, ray {meta['ray']}, Python {meta['python']}. "
        "Medians over reps. Start-up: command start to rank 0's first optimizer step. "
        "Throughput: global samples/s after warm-up. Memory: peak summed PSS of the command and its descendants.",
        "",
        "| workload | workers | runner | start-up (s) | samples/s | peak mem (MiB) | wall (s) "
        "| throughput vs torchrun | start-up vs torchrun | data wait (% of step) | reps ok | note |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['workload']} | {s['workers']} | {s['runner']} | {fmt(s['startup_s'], '.2f')} "
            f"| {fmt(s['samples_per_sec'], ',.0f')} | {fmt(s['peak_mem_mb'], ',.0f')} | {fmt(s['wall_s'], '.1f')} "
            f"| {fmt(s['throughput_ratio'], '.2f')} | {fmt(s['startup_ratio'], '.2f')} "
            f"| {fmt(s['data_wait_pct'], '.2f')} | {s['reps_ok']}/{s['reps']} | {s['note'].replace('|', '/')} |")
    lines += [
        "",
        "Notes:",
        "- `single` is one process without DDP; `torchrun` always wraps the model in DDP, even with "
        "1 worker, while Ray Train's `prepare_model` skips DDP for 1 worker.",
        "- `orchestrator` reports its own steady samples/s and first-step time (summary.json); "
        "its warm-up may differ from the other runners' first "
        f"{meta['warmup']} steps.",
        "- Peak memory: RSS is sampled every interval and PSS re-read whenever the tree's RSS grew "
        f"by over {PSS_RSS_GROWTH:.0%} (reading PSS slows the processes it reads).",
    ]
    return "\n".join(lines) + "\n"


COLORS = {"single": "tab:gray", "torchrun": "tab:blue", "raytrain": "tab:orange", "orchestrator": "tab:green",
          "orchestrator-log1": "tab:olive"}


def chart(summary: list, path: Path) -> None:
    """Two panels, throughput and start-up: one group of bars per (workload, workers), one bar per runner."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    groups = list(dict.fromkeys((s["workload"], s["workers"]) for s in summary))
    runners = [r for r in RUNNERS if any(s["runner"] == r for s in summary)]
    by_key = {(s["workload"], s["workers"], s["runner"]): s for s in summary}
    width = 0.8 / max(1, len(runners))
    fig, axes = plt.subplots(2, 1, figsize=(max(6, 1.8 * len(groups) + 2), 8), sharex=True)
    # Throughput as a ratio to torchrun: absolute samples/s differ by 100x between workloads.
    panels = [("throughput_ratio", "steady throughput vs torchrun (higher is better)", "{:.2f}"),
              ("startup_s", "start-up: command start to first optimizer step (s, lower is better)", "{:.1f}")]
    for ax, (key, title, label_fmt) in zip(axes, panels):
        for i, runner in enumerate(runners):
            xs, ys = [], []
            for g, (workload, workers) in enumerate(groups):
                s = by_key.get((workload, workers, runner))
                if s and s[key] is not None:
                    xs.append(g + (i - (len(runners) - 1) / 2) * width)
                    ys.append(s[key])
            bars = ax.bar(xs, ys, width, color=COLORS[runner])
            ax.bar_label(bars, labels=[label_fmt.format(y) for y in ys], fontsize=7, rotation=90, padding=2)
        if key == "throughput_ratio":
            ax.axhline(1.0, color="black", linewidth=0.8, alpha=0.6)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.25)  # room for the bar labels
    axes[1].set_xticks(range(len(groups)))
    axes[1].set_xticklabels([f"{w}\n{n} worker{'s' if n > 1 else ''}" for w, n in groups])
    # Legend from patches: a runner without any result has no bar to take its colour from.
    has_result = {s["runner"] for s in summary if s["samples_per_sec"] is not None}
    handles = [Patch(color=COLORS[r], label=r if r in has_result else f"{r} (no result)") for r in runners]
    fig.legend(handles=handles, loc="upper center", ncol=len(runners), fontsize="small")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def csv_list(value: str) -> list:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 200)")
    p.add_argument("--warmup", type=int, default=None,
                   help="steps left out of the steady throughput (default: max(5, steps // 10))")
    p.add_argument("--num-samples", type=int, default=4096, help="synthetic dataset size (cycled through)")
    p.add_argument("--runners", type=csv_list, default=None, help=f"comma list from {','.join(RUNNERS)}")
    p.add_argument("--workloads", type=csv_list, default=None,
                   help=f"comma list from {','.join(THROUGHPUT_WORKLOADS)}")
    p.add_argument("--memory-gb", type=float, default=None,
                   help="also check memory with 2 workers on a synthetic dataset of this size "
                        "(default 1.0; 0 skips; --quick skips unless given)")
    p.add_argument("--workers", type=lambda v: [int(x) for x in csv_list(v)], default=None,
                   help="comma list of worker counts (default 1,2; `single` only runs with 1)")
    p.add_argument("--quick", action="store_true",
                   help="smoke configuration: 1 rep, 20 steps, mlp only (explicit options still win)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default scripts/results/<date>/)")
    p.add_argument("--timeout", type=float, default=1200, help="seconds before one run is ended")
    p.add_argument("--mem-interval", type=float, default=0.1,
                   help="seconds between memory samples; 0 turns memory sampling off")
    args = p.parse_args(argv)

    if args.quick:  # smaller defaults; anything given explicitly still wins
        args.reps = args.reps or 1
        args.steps = args.steps or 20
        args.workloads = args.workloads or ["mlp"]
    args.reps = args.reps or 3
    args.steps = args.steps or 200
    args.runners = args.runners or RUNNERS
    args.workloads = args.workloads or list(THROUGHPUT_WORKLOADS)
    if args.memory_gb is None:
        args.memory_gb = 0.0 if args.quick else 1.0
    args.workers = args.workers or [1, 2]
    if args.warmup is None:
        args.warmup = max(5, args.steps // 10)
    for name, chosen, known in (("runner", args.runners, RUNNERS), ("workload", args.workloads, THROUGHPUT_WORKLOADS)):
        unknown = set(chosen) - set(known)
        if unknown:
            p.error(f"unknown {name}(s) {sorted(unknown)}; known: {list(known)}")
    if not 0 < args.warmup < args.steps:
        p.error(f"need 0 < --warmup ({args.warmup}) < --steps ({args.steps})")
    if args.out is None:
        args.out = SCRIPTS / "results" / datetime.date.today().isoformat()
    return args


def plan(args) -> list:
    """Interleaved order: every configuration once per rep, reps in the outer loop."""
    configs = [(workload, workers, runner)
               for workload in args.workloads for workers in args.workers for runner in args.runners
               if not (runner == "single" and workers != 1)]
    return [(rep, *c) for rep in range(1, args.reps + 1) for c in configs]


def versions() -> dict:
    import torch
    try:
        import ray
        ray_version = ray.__version__
    except ImportError:
        ray_version = "not installed"
    return {"torch": torch.__version__, "ray": ray_version, "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "platform": platform.platform()}


def main(argv=None) -> int:
    args = parse_args(argv)
    args.ray_tmp_root = Path(tempfile.mkdtemp(prefix="rt"))
    try:
        return run_benchmark(args)
    finally:
        shutil.rmtree(args.ray_tmp_root, ignore_errors=True)


def run_benchmark(args) -> int:
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "reps": args.reps,
            "steps": args.steps, "warmup": args.warmup, "num_samples": args.num_samples,
            "runners": args.runners, "workloads": args.workloads, "workers": args.workers, **versions()}

    rows = []
    todo = plan(args)
    if not todo:
        sys.exit("nothing to run: `single` only runs with 1 worker")
    for i, (rep, workload, workers, runner) in enumerate(todo, start=1):
        print(f"[{i}/{len(todo)}] rep {rep} {workload} workers={workers} {runner} ...", end=" ", flush=True)
        row = run_one(runner, workload, workers, rep, args, logs)
        rows.append(row)
        if row["status"] == "ok":
            print(f"start-up {row['startup_s']:.2f} s, {row['samples_per_sec']:,.0f} samples/s, "
                  f"peak {fmt(row['peak_mem_mb'], ',.0f')} MiB ({row['mem_samples']} samples, "
                  f"{row['pss_reads']} PSS reads), wall {row['wall_s']:.1f} s", flush=True)
        else:
            print(f"{row['status']}: {row['note']}", flush=True)
        # Keep what has been measured so far, in case a later run hangs or the session ends.
        (args.out / "raw.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=1))

    memory = memory_check(args, logs) if args.memory_gb > 0 else []
    summary = summarise(rows)
    (args.out / "raw.json").write_text(json.dumps({"meta": meta, "runs": rows, "summary": summary,
                                                   "memory": memory}, indent=1))
    table = markdown_table(summary, meta) + memory_table(memory, args.memory_gb)
    (args.out / "results.md").write_text(table)
    chart(summary, args.out / "results.png")
    print()
    print(table)
    print(f"wrote {args.out / 'results.md'}, {args.out / 'results.png'}, {args.out / 'raw.json'}")
    # Non-zero only if a runner that should work failed; skipped rows (not installed / not available) are fine.
    return 1 if any(r["status"] == "failed" for r in rows + memory) else 0


# ----------------------------------------------------------------------------- memory check
MEMORY_RUNNERS = ["torchrun", "orchestrator"]


def memory_check(args, logs: Path) -> list:
    """Peak memory of all processes with 2 workers on one dataset of --memory-gb, against the same
    run on a tiny dataset: the difference is what the data costs. The orchestrator puts it in the
    object store once (workers map it); torchrun's ranks each build their own copy."""
    row_bytes = 3 * 32 * 32 * 4
    rows = []
    for runner in MEMORY_RUNNERS:
        peaks = {}
        for size, samples in (("tiny", 4096), ("large", int(args.memory_gb * 2**30 / row_bytes))):
            mem_args = argparse.Namespace(**vars(args))
            mem_args.num_samples, mem_args.steps, mem_args.warmup = samples, 30, 5
            print(f"[memory] {runner}, 2 workers, {samples * row_bytes / 2**20:,.0f} MiB dataset ...", end=" ",
                  flush=True)
            row = run_one(runner, "memory", 2, 1, mem_args, logs)
            print(f"peak {fmt(row['peak_mem_mb'], ',.0f')} MiB" if row["status"] == "ok" else row["note"],
                  flush=True)
            peaks[size] = row
        large, tiny = peaks["large"], peaks["tiny"]
        dataset_mb = int(args.memory_gb * 2**30 / row_bytes) * row_bytes / 2**20
        extra = (large["peak_mem_mb"] - tiny["peak_mem_mb"]
                 if large.get("peak_mem_mb") and tiny.get("peak_mem_mb") else None)
        rows.append({"runner": runner, "status": "ok" if extra is not None else "failed",
                     "note": "; ".join(n for n in (large["note"], tiny["note"]) if n), "dataset_mb": dataset_mb,
                     "peak_tiny_mb": tiny.get("peak_mem_mb"), "peak_large_mb": large.get("peak_mem_mb"),
                     "data_mb": extra, "copies": extra / dataset_mb if extra is not None else None})
    return rows


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

if __name__ == "__main__":
    sys.exit(main())
