"""`torchrun` runner: a plain DDP script, launched as
`torchrun --standalone --nproc_per_node=W scripts/bench/torchrun_runner.py ...` (gloo, CPU).

It always wraps the model in DDP, even with one worker, as a plain DDP script would
(Ray Train's prepare_model skips DDP for one worker).

``--comm-hook none|fp16|bf16|powersgd`` registers one of torch's DDP communication hooks, built by the
orchestrator's own ``hook_for`` so that both peers register exactly the same (state, hook): fp16/bf16
compression, or PowerSGD (rank 1, compressing from ``--powersgd-start-iter``) with its buckets run in
order on gloo, without which torch's PowerSGD hook mis-orders collectives between ranks on gloo.
This is the one import of the orchestrator in this script; it does nothing else.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from bench import common


def register_hook(model: DistributedDataParallel, name: str, start_iter: int) -> None:
    if name == "none":
        return
    from orchestrator.config.run import DDPConfig
    from orchestrator.worker.comm_hooks import hook_for

    state, hook = hook_for(DDPConfig(comm_hook=name, powersgd_start_iter=start_iter), seed=common.SEED)
    model.register_comm_hook(state, hook)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    common.add_common_args(parser)
    parser.add_argument("--comm-hook", choices=["none", "fp16", "bf16", "powersgd"], default="none")
    parser.add_argument("--powersgd-start-iter", type=int, default=2)
    args = parser.parse_args()

    common.pin_threads()
    dist.init_process_group("gloo")  # rank, world size and rendezvous come from torchrun's env vars
    rank, world = dist.get_rank(), dist.get_world_size()
    model = DistributedDataParallel(common.build_model(args.workload))
    register_hook(model, args.comm_hook, args.powersgd_start_iter)
    result = common.train(model, args.workload, rank=rank, world=world, steps=args.steps,
                          warmup=args.warmup, num_samples=args.num_samples)
    if rank == 0:
        common.print_result(result)
    # Leave together: a rank tearing gloo down while its peer is still connected can abort
    # the peer ("terminate called without an active exception"), which we saw once here.
    dist.barrier()
    dist.destroy_process_group()
    # Interpreter teardown with gloo's threads still winding down sometimes aborts the process
    # (SIGABRT, "terminate called without an active exception"), which torchrun then reports as a
    # failure of the whole run. The result is printed already: leave without that teardown.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
