"""Which samples each rank streams in an epoch, and where a resumed rank starts: pure arithmetic
over the shard index (file names and sample counts), the same on every rank, so no rank needs to
ask another.

The shards are dealt to *slots*: one per DataLoader worker process of each rank (one per rank with
``data.num_workers=0``). Shard ``j`` goes to slot ``j % S`` and slot ``g`` belongs to rank ``g % N``,
so with one slot per rank, rank ``r`` of ``N`` takes shards ``r, r + N, ...`` (a rank keeps its
files from epoch to epoch, which is what a node's page cache wants; DDP averages the gradients of
all ranks, so which rank reads which shard does not change what the model learns). Each epoch
shuffles the order of every slot's shards with ``(seed, epoch, slot)``. Every slot yields the same
number of batches, ``quota``: the fewest any slot can fill, so no rank waits at the all-reduce. A DataLoader then takes its workers' batches in turn, so
batch ``i`` of a rank comes from its worker ``i % K``: the rank's stream is fixed by (epoch, batch),
and a run resumed after ``b`` batches starts each worker at the sample it had reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class ShardIndex:
    """The shards of one split: where each is and how many samples it holds."""
    urls: Tuple[str, ...]
    counts: Tuple[int, ...]

    @property
    def total(self) -> int:
        return int(sum(self.counts))

    def __len__(self) -> int:
        return len(self.urls)


@dataclass(frozen=True)
class Layout:
    """How one epoch's stream is dealt: ``world_size`` ranks with ``workers`` loader processes each."""
    world_size: int
    workers: int          # DataLoader worker processes per rank (0: read in the training process)
    batch_size: int

    @property
    def per_rank(self) -> int:
        return max(1, self.workers)

    @property
    def slots(self) -> int:
        return self.world_size * self.per_rank

    def slot(self, rank: int, worker: int) -> int:
        return worker * self.world_size + rank


@dataclass(frozen=True)
class Order:
    """How an epoch orders each slot's shards."""
    epoch: int = 0
    seed: int = 0
    shuffle: bool = True


def slot_shards(n_shards: int, slot: int, slots: int, order: Order = Order(shuffle=False)) -> List[int]:
    shards = list(range(slot, n_shards, slots))
    if order.shuffle:
        permutation = np.random.default_rng([order.seed, order.epoch, slot]).permutation(len(shards))
        shards = [shards[i] for i in permutation]
    return shards


def quota(index: ShardIndex, layout: Layout) -> int:
    """Batches every slot yields in every epoch: the fewest whole batches any slot's shards hold."""
    fills = [sum(index.counts[j] for j in slot_shards(len(index), g, layout.slots)) // layout.batch_size
             for g in range(layout.slots)]
    return min(fills) if fills else 0


def batches_per_rank(index: ShardIndex, layout: Layout) -> int:
    return quota(index, layout) * layout.per_rank


def left_out(index: ShardIndex, layout: Layout) -> int:
    """Samples of the split no rank reads in an epoch (slots hold more than the quota)."""
    return index.total - quota(index, layout) * layout.batch_size * layout.slots


def worker_start(batches_done: int, worker: int, per_rank: int) -> int:
    """Batches loader worker ``worker`` had produced after the rank consumed ``batches_done``
    (they are taken in turn: batch i came from worker i % per_rank)."""
    return len(range(worker, batches_done, per_rank))


def rotation(batches_done: int, per_rank: int) -> int:
    """A resumed DataLoader starts with its worker 0, so worker w plays the part of the worker that
    was next in turn: (w + rotation) % per_rank."""
    return batches_done % per_rank


def locate(counts: Sequence[int], skip: int) -> Tuple[int, int]:
    """(position in the list, offset in that shard) of sample ``skip`` of the concatenated shards."""
    for i, n in enumerate(counts):
        if skip < n:
            return i, skip
        skip -= n
    return len(counts), 0


@dataclass(frozen=True)
class SlotPlan:
    """What one loader worker reads this epoch: its shards in order, where to start, how many batches."""
    shards: Tuple[int, ...]
    start_shard: int      # position in ``shards``
    start_offset: int     # samples to skip in that shard
    batches: int          # batches still to yield


def slot_plan(index: ShardIndex, layout: Layout, order: Order, rank: int, worker: int,
              batches_done: int = 0) -> SlotPlan:
    part = (worker + rotation(batches_done, layout.per_rank)) % layout.per_rank
    shards = slot_shards(len(index), layout.slot(rank, part), layout.slots, order)
    done = worker_start(batches_done, part, layout.per_rank)
    start_shard, offset = locate([index.counts[j] for j in shards], done * layout.batch_size)
    return SlotPlan(tuple(shards), start_shard, offset, max(0, quota(index, layout) - done))


def positions(index: ShardIndex, layout: Layout, order: Order, batches_done: int) -> List[Dict]:
    """Every slot's shard and offset after ``batches_done`` batches per rank (what a checkpoint records)."""
    table = []
    for rank in range(layout.world_size):
        for part in range(layout.per_rank):
            shards = slot_shards(len(index), layout.slot(rank, part), layout.slots, order)
            done = worker_start(batches_done, part, layout.per_rank)
            at, offset = locate([index.counts[j] for j in shards], done * layout.batch_size)
            table.append({"rank": rank, "worker": part,
                          "shard": index.urls[shards[at]] if at < len(shards) else None, "offset": offset})
    return table


def resume_problem(recorded: Optional[Dict], layout: Layout) -> Optional[str]:
    """Why a recorded stream position cannot be continued exactly with this layout, or None."""
    if not recorded:
        return None
    was = (recorded.get("world_size"), recorded.get("workers"), recorded.get("batch_size"))
    now = (layout.world_size, layout.workers, layout.batch_size)
    if was == now:
        return None
    return (f"the stream position was recorded with {was[0]} ranks x {was[1]} loader workers, batch {was[2]}; "
            f"now {now[0]} x {now[1]}, batch {now[2]}: shards are dealt differently")


def layout_problem(index: ShardIndex, layout: Layout, key: str = "data.path") -> Optional[str]:
    """Why this split cannot give every reader (rank x loader worker) a full batch, or None."""
    if len(index) < layout.slots:
        return (f"{key}: {len(index)} shard(s) for {layout.world_size} rank(s) x {layout.per_rank} reader(s) "
                f"each (data.num_workers={layout.workers}): every reader needs its own shard; write more, "
                f"smaller shards or lower data.num_workers")
    if quota(index, layout) == 0:
        return (f"data.batch_size={layout.batch_size} is larger than what the smallest reader's shards hold "
                f"({index.total} samples in {len(index)} shards for {layout.slots} readers); lower "
                "data.batch_size or data.num_workers")
    return None
