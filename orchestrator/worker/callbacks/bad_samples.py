"""With ``data.on_bad_sample=skip``: the skipped samples of all ranks, summed, in TensorBoard
(``data/bad_samples``, a running total) and as an event whenever the total grows."""

from __future__ import annotations

import torch
import torch.distributed as dist

from orchestrator.worker.callbacks.base import Callback


class BadSampleReport(Callback):
    def __init__(self, every_n_steps: int):
        self.every_n_steps = max(1, every_n_steps)
        self.reported = 0

    def on_step_end(self, loop, step: int, result) -> None:
        if step % self.every_n_steps == 0:
            self.report(loop, step)

    def on_epoch_end(self, loop, epoch: int) -> None:
        self.report(loop, loop.state.step)

    def report(self, loop, step: int) -> None:
        """Collective (every rank calls it at the same step): one all-reduce of a single number."""
        counter = loop.c.bad_samples
        total = torch.tensor([float(counter.count)])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(total)
        total = int(total.item())
        if total > self.reported:  # the same on every rank (a reduced number): the gather below is too
            last = last_bad_samples(counter)
            loop.r.event(step, "bad_samples", f"{total} bad sample(s) skipped so far (data.on_bad_sample=skip, "
                                              f"at most data.max_bad_samples per rank){last}")
            self.reported = total
        loop.r.metrics(step, {"data/bad_samples": float(total)})


def last_bad_samples(counter) -> str:
    """Each rank's last skipped sample (a gather, only when the total grew: rare by definition)."""
    mine = counter.last.describe() if counter.last else None
    every = [mine]
    if dist.is_available() and dist.is_initialized():
        every = [None] * dist.get_world_size()
        dist.all_gather_object(every, mine)
    named = [f"rank {rank}: {text}" for rank, text in enumerate(every) if text]
    return f"; the last on {'; '.join(named)}" if named else ""
