"""How each start-up phase grows with the gang size on this machine, next to the bound derived for it
(orchestrator/policy/start_bounds.py): placement, actor start and rendezvous.

    python scripts/start_bounds.py --sizes 1 2 4 8 16 --bundles 1 16 64 256

Placement alone is measured with tiny bundles (0.01 CPU) up to 256 of them, without starting processes;
the whole start (placement, worker processes, gloo process group) with one logical CPU per worker on a
local Ray that offers as many logical CPUs as the largest gang (the ranks share this machine's cores,
which is the worst case the per-worker terms are there for). Writes a table to scripts/results/DATE/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import tempfile
import time
from pathlib import Path

import ray
from ray.util.placement_group import placement_group, remove_placement_group

from orchestrator import config as C
from orchestrator.driver.worker_group import WorkerGroup
from orchestrator.policy.start_bounds import NOTHING, actor_start_s, placement_s, rendezvous_s


def placement_only(bundles: int) -> float:
    t0 = time.perf_counter()
    pg = placement_group([{"CPU": 0.01} for _ in range(bundles)], strategy="PACK")
    ray.get(pg.ready(), timeout=120)
    seconds = time.perf_counter() - t0
    remove_placement_group(pg)
    return seconds


def whole_start(size: int) -> dict:
    group = WorkerGroup.start(C.ScalingConfig(num_workers=size), C.ClusterConfig(), size, collective_timeout_s=600)
    group.shutdown()
    return group.timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--bundles", type=int, nargs="+", default=[1, 16, 64, 256])
    args = parser.parse_args()
    temp_dir = tempfile.mkdtemp(prefix="sb", dir="/tmp")
    ray.init(num_cpus=max(args.sizes), include_dashboard=False, _temp_dir=temp_dir, logging_level="warning")
    try:
        rows = {"placement_only": [{"bundles": n, "placement_s": placement_only(n), "bound_s": placement_s(n)}
                                   for n in args.bundles],
                "whole_start": []}
        for size in args.sizes:
            timings = whole_start(size)
            rows["whole_start"].append({"world_size": size, **timings, "actor_start_bound_s": actor_start_s(size, NOTHING),
                                        "rendezvous_bound_s": rendezvous_s(size)})
            print(rows["whole_start"][-1], flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    write(rows)


def write(rows: dict) -> None:
    out = Path(__file__).parent / "results" / datetime.date.today().isoformat()
    out.mkdir(parents=True, exist_ok=True)
    (out / "start_bounds.json").write_text(json.dumps(rows, indent=2))
    lines = ["| bundles | placement s | derived bound s |", "|---:|---:|---:|"]
    lines += [f"| {r['bundles']} | {r['placement_s']:.3f} | {r['bound_s']:g} |" for r in rows["placement_only"]]
    lines += ["", "| world size | placement s | actor start s (bound) | rendezvous s (bound) |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['world_size']} | {r['placement_s']:.3f} | {r['actor_start_s']:.1f} ({r['actor_start_bound_s']:g}) "
              f"| {r['process_group_s']:.2f} ({r['rendezvous_bound_s']:g}) |" for r in rows["whole_start"]]
    (out / "start_bounds.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
