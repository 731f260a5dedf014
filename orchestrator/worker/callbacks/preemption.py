"""Preemption notices: a spot instance's SIGTERM comes 30-120 s before the machine goes.

The noticed rank's Worker turns the signal into ``reporter.give_notice()``; its next metrics flush
votes "checkpoint now" (the vote is reduced with the stop vote, so every rank sees it at the same
step). Every rank then checkpoints, rank 0 waits until that checkpoint is stored, all meet at a
barrier, and the noticed rank leaves the gang by raising ``Preempted``. The driver replaces it:
healed from a live peer (failure.recovery=peer) or restarted from the checkpoint just written, so
no step is lost either way.
"""

from __future__ import annotations

import torch.distributed as dist

from orchestrator.worker.callbacks.base import Callback


class Preempted(RuntimeError):
    """This rank was given notice and has left the gang after a checkpoint (not a bug: not retried as one)."""


class Preemption(Callback):
    def on_step_end(self, loop, step: int, result) -> None:
        if not loop.checkpoint_now:
            return
        loop.checkpoint_now = False
        loop.r.event(step, "preemption", f"a rank was given notice (SIGTERM): checkpoint at step {step}, "
                                         f"then it leaves the gang")
        loop.checkpoint()
        loop.r.wait_persisted()  # rank 0: the checkpoint is stored; the others return at once
        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # the noticed rank leaves only once the checkpoint exists
        if loop.r.noticed_at is not None:
            raise Preempted(f"rank {loop.c.rank} was given notice (SIGTERM) and left the gang after the "
                            f"checkpoint at step {step}")
