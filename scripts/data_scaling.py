"""Peak memory per worker against dataset size, for the streaming path (each rank reads its own
Parquet files) and the shared-memory path (the driver loads MNIST-format IDX files and shares them
through Ray's object store), on the same rows and the same model (MLP 784-128-64-10), 2 workers,
a fixed number of steps, the object store capped (256 MiB by default).

    python scripts/data_scaling.py                 # 0.25, 0.5, 1, 2 GiB
    python scripts/data_scaling.py --sizes 0.25,0.5,1,2,4 --steps 3000
    python scripts/data_scaling.py --quick         # ~2 min smoke run, tiny sizes

Each size is written to --work-dir (both formats), trained on by each path, and deleted before the
next. A failed run is a result: its row says why. Writes data_scaling.md/.png/.json to --out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from bench.data_scaling_plan import (MIB, PATHS, ScalingRow, SizePlan, markdown_table,  # noqa: E402
                                     plan_sizes, shared_path_fits)
from bench.measure import child_env, end_leftovers, end_processes, safe_children  # noqa: E402
from bench.role_memory import RolePeaks, sample_roles  # noqa: E402
from bench.data_scaling_io import chart, data_wait_pct, error_line, write_report  # noqa: E402

STREAMING, SHARED = PATHS
COMMON = ["model=mlp", "data.val_fraction=0", "data.batch_size=64", "trainer.max_epochs=1000",
          "trainer.log_every_n_steps=20", "checkpoint.every_epoch=false", "stopping.overfitting.enabled=false"]


def path_overrides(path: str, data_dir: Path) -> list:
    if path == STREAMING:
        return ["data=parquet", f"data.path={data_dir / 'parquet'}", "data.features=[x]"]
    return ["data=mnist", f"data.path={data_dir / 'idx'}"]


def write_data(plan: SizePlan, data_dir: Path) -> float:
    from orchestrator.data import generate as G

    t0 = time.perf_counter()
    G.write_parquet_chunks(data_dir / "parquet", G.digit_chunks(plan.rows), plan.rows_per_file)
    G.write_idx_chunks(data_dir / "idx", G.digit_chunks(plan.rows), plan.rows)
    return time.perf_counter() - t0


def run_job(path: str, plan: SizePlan, data_dir: Path, args) -> ScalingRow:
    run_dir, ray_tmp = data_dir / f"run-{'stream' if path == STREAMING else 'shared'}", Path(args.work_dir) / "r"
    shutil.rmtree(ray_tmp, ignore_errors=True)
    ray_tmp.mkdir(parents=True)
    env = child_env(ray_tmp)
    env["RAY_DEFAULT_OBJECT_STORE_MAX_MEMORY_BYTES"] = str(int(args.object_store_mb * MIB))
    cmd = [sys.executable, "-m", "orchestrator.train", *COMMON, f"trainer.max_steps={args.steps}",
           *path_overrides(path, data_dir), f"hydra.run.dir={run_dir}"]
    peaks, seen, stop = RolePeaks(), {}, threading.Event()
    with open(data_dir / f"{run_dir.name}.log", "w") as log:
        t0 = time.perf_counter()
        proc = psutil.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        sampler = threading.Thread(target=sample_roles, args=(proc, ray_tmp, args.interval, stop, peaks, seen),
                                   daemon=True)
        sampler.start()
        try:
            proc.wait(timeout=args.timeout)
            timed_out = False
        except psutil.TimeoutExpired:
            timed_out = True
            end_processes([proc, *safe_children(proc), *seen.values()])
        stop.set()
        sampler.join()
        returncode, wall = proc.wait(), time.perf_counter() - t0
    end_leftovers(proc, seen, ray_tmp)
    row = result_row(path, plan, run_dir, peaks, wall)
    if timed_out or returncode != 0 or row.status != "ok":
        row.status = "failed"
        row.note = f"timed out after {args.timeout:.0f} s" if timed_out else \
            error_line(run_dir, (data_dir / f"{run_dir.name}.log").read_text(errors="replace"), returncode)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    return row


def result_row(path: str, plan: SizePlan, run_dir: Path, peaks: RolePeaks, wall: float) -> ScalingRow:
    row = ScalingRow(path, plan.gigabytes, "ok", wall_s=wall, driver_rss_mib=peaks.driver_rss / MIB or None,
                     total_pss_mib=peaks.total_pss / MIB or None, ray_tmp_peak_mib=peaks.ray_tmp_bytes / MIB)
    if peaks.worker_rss:
        row.per_rank_rss_mib = [v / MIB for v in peaks.worker_rss.values()]
        row.worker_rss_mib = max(row.per_rank_rss_mib)
        row.worker_uss_mib = max(peaks.worker_uss.values()) / MIB
    summary_file = run_dir / "summary.json"
    if not summary_file.exists():
        row.status = "failed"
        return row
    summary = json.loads(summary_file.read_text())
    timing = summary.get("timing", {})
    row.samples_per_s = timing.get("steady_samples_per_sec")
    row.load_s = (timing.get("data_load_s") or 0) + (timing.get("data_share_s") or 0)
    row.data_wait_pct = data_wait_pct(Path(summary.get("tensorboard_dir") or run_dir / "tb"))
    if summary.get("status") != "completed":
        row.status = "failed"
    return row


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="0.25,0.5,1,2", help="dataset sizes in GiB of float32 features")
    parser.add_argument("--steps", type=int, default=3000, help="trainer.max_steps of every run")
    parser.add_argument("--object-store-mb", type=float, default=256)
    parser.add_argument("--work-dir", default="/tmp/dscale", help="the generated data (deleted after each size)")
    parser.add_argument("--out", default=str(ROOT / "scripts" / "results" / "2026-12-01"))
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per run")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between memory samples")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 100 steps: a smoke run")
    parser.add_argument("--paths", default="streaming,shared", help="which paths to run (streaming, shared)")
    parser.add_argument("--report-from", default=None, help="only rewrite the .md and .png from this .json")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.steps = "0.02,0.05", 100
    args.size_list = [float(s) for s in args.sizes.split(",") if s.strip()]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    command = "python scripts/data_scaling.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.report_from:
        saved = json.loads(Path(args.report_from).read_text())
        args.steps, args.object_store_mb, args.interval = saved["steps"], saved["object_store_mb"], saved["interval"]
        return report([ScalingRow(**r) for r in saved["rows"]], Path(args.out), saved["command"], args)
    work = Path(args.work_dir)
    rows = []
    for plan in plan_sizes(args.size_list):
        data_dir = work / f"{plan.gigabytes:g}gib"
        shutil.rmtree(data_dir, ignore_errors=True)
        print(f"[{plan.gigabytes:g} GiB] writing {plan.rows:,} rows ({plan.files} Parquet files + IDX) ...",
              end=" ", flush=True)
        print(f"{write_data(plan, data_dir):.0f} s", flush=True)
        for path in (p for p in PATHS if p.split()[0] in args.paths):
            skip = shared_path_fits(plan, psutil.virtual_memory().available) if path == SHARED else None
            row = ScalingRow(path, plan.gigabytes, skip) if skip else run_job(path, plan, data_dir, args)
            rows.append(row)
            print(f"  {path}: {row.status} {row.note} worker RSS {row.worker_rss_mib or 0:,.0f} MiB, "
                  f"driver {row.driver_rss_mib or 0:,.0f} MiB, {row.samples_per_s or 0:,.0f} samples/s", flush=True)
        shutil.rmtree(data_dir, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data_scaling.json").write_text(json.dumps(
        {"command": command, "steps": args.steps, "object_store_mb": args.object_store_mb, "interval": args.interval,
         "rows": [asdict(r) for r in rows]}, indent=1))
    return report(rows, out, command, args)


def report(rows: list, out: Path, command: str, args) -> int:
    out.mkdir(parents=True, exist_ok=True)
    chart(rows, out / "data_scaling.png")
    write_report(rows, out / "data_scaling.md", command, args)
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
