"""Run a function on N real torch.distributed ranks (gloo, CPU) without Ray."""

from __future__ import annotations

import os
import pickle
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, List

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _entry(rank: int, world: int, out_dir: str, fn: Callable, args: tuple) -> None:
    torch.set_num_threads(1)
    # A file store: no TCP port to pick, so no race with other processes on this machine.
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/store", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    result = fn(rank, world, *args)
    # Without a barrier, a rank that tears gloo down while its peer still sends can abort
    # ("terminate called without an active exception").
    dist.barrier()
    dist.destroy_process_group()
    Path(out_dir, f"{rank}.pkl").write_bytes(pickle.dumps(result))


def run_ranks(world: int, fn: Callable, *args: Any) -> List[Any]:
    """fn(rank, world, *args) on each rank; returns the results in rank order."""
    with tempfile.TemporaryDirectory() as out:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        mp.spawn(_entry, args=(world, out, fn, args), nprocs=world, join=True)
        return [pickle.loads(Path(out, f"{r}.pkl").read_bytes()) for r in range(world)]
