"""Which of torch's DDP communication hooks (``torch.distributed.algorithms.ddp_comm_hooks``) a
rank registers for ``trainer.ddp.comm_hook``.

PowerSGD keeps state (error feedback, warm-start matrices, an iteration count) that is not saved in
checkpoints: a resumed or restarted attempt builds a new DDP whose buckets are rebuilt after its first
step, and the saved per-bucket tensors would not match them. So every attempt starts PowerSGD afresh:
plain all-reduce for ``powersgd_start_iter`` steps, then compression with zero error feedback.

On gloo, PowerSGD's buckets run one after another (``in_bucket_order``): see there why.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook

from orchestrator.config.run import DDPConfig

# (state, hook) as DistributedDataParallel.register_comm_hook takes them.
Hook = Tuple[Any, Callable]

STATELESS = {"fp16": default_hooks.fp16_compress_hook, "bf16": default_hooks.bf16_compress_hook}


def hook_for(settings: DDPConfig, seed: int) -> Optional[Hook]:
    """None for plain all-reduce. ``seed`` must be the same on every rank: PowerSGD draws its random
    projections from it and every replica must draw the same ones."""
    if settings.comm_hook == "none":
        return None
    if settings.comm_hook in STATELESS:
        return None, STATELESS[settings.comm_hook]  # state None: the default process group
    state = powerSGD_hook.PowerSGDState(process_group=None, matrix_approximation_rank=settings.powersgd_rank,
                                        start_powerSGD_iter=settings.powersgd_start_iter, random_seed=seed)
    hook = powerSGD_hook.powerSGD_hook
    return state, in_bucket_order(hook) if dist.get_backend() == "gloo" else hook


def in_bucket_order(hook: Callable) -> Callable:
    """``hook`` with each bucket started only once the previous bucket's collectives are done.

    PowerSGD issues a bucket's second all-reduce (of Q) from the callback of its first (of P). On gloo
    that callback runs on a gloo thread while the backward pass goes on issuing the next bucket's first
    all-reduce, so the two ranks can issue them in different orders: a collective mismatch that aborts
    the process or hangs (torch 2.13, as soon as a model has more than one bucket). Waiting costs the
    overlap of communication with the backward pass, which two CPU cores barely have anyway.
    """
    previous: list = []

    def ordered_hook(state, bucket):  # no annotations: DDP checks them against its own types
        if previous:
            previous.pop().wait()
        future = hook(state, bucket)
        if not bucket.is_last():  # the last bucket of a step: DDP waits for every future itself
            previous.append(future)
        return future

    return ordered_hook
